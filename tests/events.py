"""Build CloudWatch Logs envelopes, CloudTrail STS events and Firehose events, in the
wire formats of ../shared/reference/aws-wire-formats.md."""
from __future__ import annotations

import base64
import gzip
import io
import json
import itertools
import urllib.parse

_seq = itertools.count(1)


def gz(data: bytes) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as f:
        f.write(data)
    return buf.getvalue()


def envelope(owner: str, group: str, stream: str, messages: list[str], ts: int = 1732626427000) -> bytes:
    events = [{"id": f"{ts}{i:040d}", "timestamp": ts + i, "message": m} for i, m in enumerate(messages)]
    return json.dumps({"messageType": "DATA_MESSAGE", "owner": owner, "logGroup": group, "logStream": stream,
                       "subscriptionFilters": ["f"], "logEvents": events}).encode()


def audit_envelope(owner: str, cluster: str, messages: list[str]) -> bytes:
    return envelope(owner, f"/aws/eks/{cluster}/cluster", "kube-apiserver-audit-0a1b", messages)


# the organisation trail's log group (trusted by support.TRUSTED_TRAILS)
TRAIL_OWNER, TRAIL_GROUP, TRAIL_STREAM = "999999999999", "aws-cloudtrail-logs-o-x", "o-x_CloudTrail_us-east-1"


def trail_envelope(events: list[dict], stream: str = TRAIL_STREAM, owner: str = TRAIL_OWNER,
                   group: str = TRAIL_GROUP) -> bytes:
    return envelope(owner, group, stream, [json.dumps(e) for e in events])


def eks_call_target(record: dict) -> str | None:
    """The principal an EKS API call grants or changes access for, as a reader of the
    CloudTrail record finds it: a Pod Identity association's role (an add-on's); else the access
    entry's principal, from the response when it names it (unencoded), else the request's
    (a URI member, percent-encoded)."""
    req, resp = record.get("requestParameters") or {}, record.get("responseElements") or {}
    if record["eventName"].endswith("PodIdentityAssociation"):
        return req.get("roleArn") or (resp.get("association") or {}).get("roleArn")
    if record["eventName"].endswith("Addon"):  # the add-on's first Pod Identity role, else its IRSA role
        first = (req.get("podIdentityAssociations") or [{}])[0]
        return first.get("roleArn") or req.get("serviceAccountRoleArn")
    arn = resp.get("principalArn") or (resp.get("accessEntry") or {}).get("principalArn") or req.get("principalArn")
    return urllib.parse.unquote(arn) if arn else None


def firehose_event(payloads: list[bytes], region: str = "us-east-1") -> dict:
    recs = []
    for p in payloads:
        n = next(_seq)
        seq = f"{49656239405717329463012870498273401873647258329813:050d}{n:06d}"
        recs.append({"recordId": seq, "approximateArrivalTimestamp": 1732626428123,
                     "data": base64.b64encode(p).decode(),
                     "kinesisRecordMetadata": {"shardId": "shardId-000000000000", "partitionKey": "k",
                                               "approximateArrivalTimestamp": 1732626428123,
                                               "sequenceNumber": seq, "subsequenceNumber": 0}})
    return {"invocationId": "inv", "deliveryStreamArn": "arn:aws:firehose:us-east-1:999999999999:deliverystream/d",
            "sourceKinesisStreamArn": "arn:aws:kinesis:us-east-1:999999999999:stream/s", "region": region, "records": recs}


def audit_event(audit_id: str, at: str, username: str, extra: dict | None = None, **kw) -> str:
    user = {"username": username, "groups": ["system:authenticated"]}
    if extra:
        user["extra"] = extra
    ev = {"kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata", "auditID": audit_id,
          "stage": "ResponseComplete", "requestURI": "/api/v1/namespaces/default/pods", "verb": "list", "user": user,
          "sourceIPs": ["198.51.100.1"], "objectRef": {"resource": "pods", "namespace": "default", "apiVersion": "v1"},
          "responseStatus": {"metadata": {}, "code": 200}, "requestReceivedTimestamp": at, "stageTimestamp": at}
    ev.update(kw)
    return json.dumps(ev)


def assumed_extra(account: str, role: str, session: str, key: str) -> dict:
    return {"accessKeyId": [key], "arn": [f"arn:aws:sts::{account}:assumed-role/{role}/{session}"],
            "canonicalArn": [f"arn:aws:iam::{account}:role/{role}"], "sessionName": [session], "principalId": ["AROAEXAMPLE"]}


def sts(name: str, at: str, recipient: str, user_identity: dict, request: dict, response: dict | None,
        event_id: str | None = None, shared: str | None = None, error: str | None = None) -> dict:
    e = {"eventVersion": "1.08", "userIdentity": user_identity, "eventTime": at, "eventSource": "sts.amazonaws.com",
         "eventName": name, "awsRegion": "us-east-1", "sourceIPAddress": "198.51.100.24", "userAgent": "aws-cli/2",
         "requestParameters": request, "responseElements": response, "requestID": f"req-{event_id or at}",
         "eventID": event_id or f"ev-{name}-{at}-{recipient}", "recipientAccountId": recipient}
    if shared:
        e["sharedEventID"] = shared
    if error:
        e["errorCode"] = error
        e["responseElements"] = None
    return e


def creds(key: str, expiration: str = "Nov 26, 2024, 8:00:00 PM") -> dict:
    return {"accessKeyId": key, "sessionToken": "x", "expiration": expiration}


def iam_user(account: str, name: str) -> dict:
    return {"type": "IAMUser", "principalId": f"AIDA{name.upper()}", "arn": f"arn:aws:iam::{account}:user/{name}",
            "accountId": account, "accessKeyId": f"AKIA{name.upper()}", "userName": name}


def assumed(account: str, role: str, session: str, key: str) -> dict:
    return {"type": "AssumedRole", "principalId": f"AROA{role.upper()}:{session}",
            "arn": f"arn:aws:sts::{account}:assumed-role/{role}/{session}", "accountId": account, "accessKeyId": key,
            "sessionContext": {"sessionIssuer": {"type": "Role", "arn": f"arn:aws:iam::{account}:role/{role}", "userName": role}}}


def assume_role(at, recipient, caller, role_arn, session, key, source_identity=None, **kw) -> dict:
    req = {"roleArn": role_arn, "roleSessionName": session}
    resp = {"credentials": creds(key), "assumedRoleUser": {"assumedRoleId": f"AROA:{session}",
            "arn": f"arn:aws:sts::{role_arn.split(':')[4]}:assumed-role/{role_arn.rsplit('/', 1)[1]}/{session}"}}
    if source_identity:
        req["sourceIdentity"] = source_identity
        resp["sourceIdentity"] = source_identity
    return sts("AssumeRole", at, recipient, caller, req, resp, **kw)
