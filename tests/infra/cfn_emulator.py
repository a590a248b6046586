"""Deploy our CloudFormation templates into a moto server, as far as moto allows.

moto's CloudFormation engine creates only some resource types (S3 buckets, Kinesis
streams, IAM roles, KMS keys, Lambda functions, log groups, SNS topics, ...) and silently
ignores the rest (logs destinations, subscription filters, Firehose, Glue, Athena,
alarms, Scheduler schedules, Lambda event-invoke configs, SNS topic and SQS queue
policies, ...). To still deploy every
resource of the real template, `deploy()`:

1. sends moto a *subset* of the template: the resource types moto's CloudFormation
   supports, unchanged, plus one stack Output per intrinsic-function leaf (Ref, Fn::Sub,
   Fn::GetAtt, Fn::Select, ...) found in the properties of the other resources, so that
   moto's CloudFormation resolves our real expressions (with our real parameters and
   conditions);
2. rebuilds those resources' properties from the outputs (Fn::If is decided from one
   output per condition; AWS::NoValue removes the key; references to other unsupported
   resources are filled in after those are created);
3. creates each of them through the service API that CloudFormation would call
   (logs PutDestination, Firehose CreateDeliveryStream, Glue CreateTable, Scheduler
   CreateSchedule, Lambda PutFunctionEventInvokeConfig, SNS/SQS SetTopicAttributes /
   SetQueueAttributes for topic and queue policies, ...), with botocore validating
   parameter names and types against the API model.

Types with no API in moto (AWS::Logs::AccountPolicy) are not created; their resolved
properties are returned so tests can check them. Nothing is dropped without a record:
`Deployment.not_created` lists every such resource with the reason.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable

INTRINSIC_KEYS = {"Ref", "Condition"} | {
    "Fn::" + n
    for n in (
        "Sub GetAtt Join Select Split If Base64 FindInMap GetAZs ImportValue Equals Not And Or "
        "Cidr Length ToJsonString"
    ).split()
}
LIST_SEP = "\u241e"  # joins list-valued intrinsics into one output string
SKIP = "@@NOT-TAKEN@@"  # an Fn::If branch that was not taken
NOVALUE = {"Ref": "AWS::NoValue"}


def is_intrinsic(node: Any) -> bool:
    return isinstance(node, dict) and len(node) == 1 and next(iter(node)) in INTRINSIC_KEYS


def moto_supported_types() -> set[str]:
    from moto.cloudformation.parsing import get_model_map

    return set(get_model_map())


# --------------------------------------------------------------- references to resources


def referenced_resources(node: Any, names: set[str]) -> set[str]:
    """Logical IDs among `names` that `node` refers to (Ref, GetAtt, ${X} in Sub)."""
    found: set[str] = set()

    def walk(n: Any, shadow: frozenset = frozenset()) -> None:
        if isinstance(n, dict):
            if "Ref" in n and len(n) == 1 and n["Ref"] in names and n["Ref"] not in shadow:
                found.add(n["Ref"])
            elif "Fn::GetAtt" in n and len(n) == 1:
                target = n["Fn::GetAtt"]
                target = target.split(".")[0] if isinstance(target, str) else target[0]
                if target in names:
                    found.add(target)
            elif "Fn::Sub" in n and len(n) == 1:
                arg = n["Fn::Sub"]
                text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
                for var in re.findall(r"\$\{([^!}][^}]*)\}", text):
                    base = var.split(".")[0]
                    if base in names and base not in variables:
                        found.add(base)
                for v in variables.values():
                    walk(v)
                return
            for v in n.values():
                walk(v)
        elif isinstance(n, list):
            for v in n:
                walk(v)

    walk(node)
    return found


def _marker(lid: str, attr: str | None) -> str:
    return f"@@{lid}.{attr}@@" if attr else f"@@{lid}@@"


_MARKER = re.compile(r"@@([A-Za-z0-9]+)(?:\.([A-Za-z0-9.]+))?@@")


def replace_refs(node: Any, names: set[str]) -> Any:
    """Replace references to `names` with @@Lid@@ / @@Lid.Attr@@ markers."""
    if isinstance(node, list):
        return [replace_refs(v, names) for v in node]
    if not isinstance(node, dict):
        return node
    if "Ref" in node and len(node) == 1 and node["Ref"] in names:
        return _marker(node["Ref"], None)
    if "Fn::GetAtt" in node and len(node) == 1:
        target = node["Fn::GetAtt"]
        lid, attr = target.split(".", 1) if isinstance(target, str) else target
        if lid in names:
            return _marker(lid, attr)
    if "Fn::Sub" in node and len(node) == 1:
        arg = node["Fn::Sub"]
        text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])

        def sub(m: re.Match) -> str:
            var = m.group(1)
            base, _, attr = var.partition(".")
            if base in names and base not in variables:
                return _marker(base, attr or None)
            return m.group(0)

        text = re.sub(r"\$\{([^!}][^}]*)\}", sub, text)
        variables = {k: replace_refs(v, names) for k, v in variables.items()}
        return {"Fn::Sub": [text, variables] if variables else text}
    return {k: replace_refs(v, names) for k, v in node.items()}


# -------------------------------------------------------------------- the subset template


@dataclass
class Leaf:
    lid: str
    output: str
    is_list: bool


@dataclass
class Plan:
    subset: dict
    emulated: dict[str, dict]  # lid -> resource (markers in place of dropped refs)
    inspected: dict[str, dict]  # lid -> resource moto creates itself (leaves only, for tests)
    leaves: dict[int, Leaf]
    condition_outputs: dict[str, str]


def _list_valued(node: Any, template: dict) -> bool:
    if "Fn::Split" in node or "Fn::GetAZs" in node:
        return True
    if "Ref" in node:
        p = template.get("Parameters", {}).get(node["Ref"], {})
        return p.get("Type", "").startswith(("CommaDelimitedList", "List<"))
    return False


def plan(template: dict, supported: set[str] | None = None) -> Plan:
    supported = moto_supported_types() if supported is None else supported
    resources = template.get("Resources", {})
    dropped = {lid for lid, r in resources.items() if r["Type"] not in supported}
    # A supported resource that needs a dropped one cannot be created by moto either.
    changed = True
    while changed:
        changed = False
        for lid, r in resources.items():
            if lid not in dropped and (
                referenced_resources(r, dropped) or set(_depends_on(r)) & dropped
            ):
                dropped.add(lid)
                changed = True

    subset = {k: v for k, v in template.items() if k not in ("Resources", "Outputs", "Rules", "Transform")}
    subset["Resources"] = {lid: r for lid, r in resources.items() if lid not in dropped}
    subset["Outputs"] = {
        k: v for k, v in template.get("Outputs", {}).items() if not referenced_resources(v, dropped)
    }
    cond_outputs: dict[str, str] = {}
    for i, name in enumerate(template.get("Conditions", {})):
        out = f"EmuCond{i}"
        cond_outputs[name] = out
        subset["Outputs"][out] = {"Value": {"Fn::If": [name, "true", "false"]}}

    emulated: dict[str, dict] = {}
    leaves: dict[int, Leaf] = {}

    def walk(node: Any, lid: str, conds: list) -> Any:
        """Return the node with each intrinsic leaf replaced by {'@leaf': n}."""
        if isinstance(node, list):
            return [walk(v, lid, conds) for v in node]
        if not isinstance(node, dict):
            return node
        if node == NOVALUE:
            return node
        if "Fn::If" in node and len(node) == 1:
            cond, yes, no = node["Fn::If"]
            return {"@if": cond, "yes": walk(yes, lid, conds + [(cond, True)]),
                    "no": walk(no, lid, conds + [(cond, False)])}
        if is_intrinsic(node):
            n = len(leaves)
            value = node
            is_list = _list_valued(node, template)
            if is_list:
                value = {"Fn::Join": [LIST_SEP, node]}
            for cond, taken in reversed(conds):  # never resolve a branch that is not taken
                value = {"Fn::If": [cond, value, SKIP] if taken else [cond, SKIP, value]}
            out = f"EmuLeaf{n}"
            subset["Outputs"][out] = {"Value": value}
            leaves[n] = Leaf(lid, out, is_list)
            return {"@leaf": n}
        return {k: walk(v, lid, conds) for k, v in node.items()}

    inspected: dict[str, dict] = {}
    for lid in resources:
        r = replace_refs(resources[lid], dropped)
        conds = [(r["Condition"], True)] if "Condition" in r else []
        walked = {**r, "Properties": walk(r.get("Properties", {}), lid, conds)}
        (emulated if lid in dropped else inspected)[lid] = walked
    return Plan(subset, emulated, inspected, leaves, cond_outputs)


def _depends_on(r: dict) -> list[str]:
    d = r.get("DependsOn", [])
    return [d] if isinstance(d, str) else list(d)


# ----------------------------------------------------------------------------- replay


@dataclass
class Created:
    ref: str
    attrs: dict[str, str] = field(default_factory=dict)


@dataclass
class Deployment:
    stack_name: str
    outputs: dict[str, str]  # the template's own outputs (emulator outputs removed)
    moto_resources: dict[str, str]  # lid -> physical id, created by moto's CloudFormation
    emulated: dict[str, Created]  # lid -> created through the service API
    resolved: dict[str, dict]  # lid -> resolved properties of every resource created
    not_created: dict[str, str]  # lid -> why not (condition false, no API in moto)


def _coerce(params: Any, shape: Any) -> Any:
    """Convert output strings to the types the API model expects (numbers, booleans)."""
    if shape is None:
        return params
    t = shape.type_name
    if t == "structure" and isinstance(params, dict):
        return {k: _coerce(v, shape.members.get(k)) for k, v in params.items()}
    if t == "list" and isinstance(params, list):
        return [_coerce(v, shape.member) for v in params]
    if t == "map" and isinstance(params, dict):
        return {k: _coerce(v, shape.value) for k, v in params.items()}
    if isinstance(params, str):
        if t in ("integer", "long"):
            return int(params)
        if t in ("double", "float"):
            return float(params)
        if t == "boolean":
            return params.lower() == "true"
    if isinstance(params, bool) and t == "string":
        return "true" if params else "false"
    if isinstance(params, (int, float)) and not isinstance(params, bool) and t == "string":
        return str(params)
    return params


def call(client, operation: str, **params):
    """client.<operation>(**params) after coercing params to the operation's input shape."""
    op_model = client.meta.service_model.operation_model(
        client.meta.method_to_api_mapping[operation]
    )
    params = _coerce(params, op_model.input_shape)
    return getattr(client, operation)(**params)


def _pick(props: dict, *keys: str) -> dict:
    return {k: props[k] for k in keys if k in props}


def _destination(c, p):
    logs = c("logs")
    d = call(logs, "put_destination", **{"destinationName": p["DestinationName"],
             "targetArn": p["TargetArn"], "roleArn": p["RoleArn"]})["destination"]
    if "DestinationPolicy" in p:
        call(logs, "put_destination_policy", destinationName=p["DestinationName"],
             accessPolicy=p["DestinationPolicy"])
    return Created(p["DestinationName"], {"Arn": d["arn"]})


def _log_stream(c, p):
    call(c("logs"), "create_log_stream", logGroupName=p["LogGroupName"], logStreamName=p["LogStreamName"])
    return Created(p["LogStreamName"])


def _subscription_filter(c, p):
    params = {"logGroupName": p["LogGroupName"], "filterName": p["FilterName"],
              "filterPattern": p["FilterPattern"], "destinationArn": p["DestinationArn"]}
    if "RoleArn" in p:
        params["roleArn"] = p["RoleArn"]
    if "Distribution" in p:
        params["distribution"] = p["Distribution"]
    # EmitSystemFields is newer than the botocore that moto is tested with; tests check
    # it in Deployment.resolved instead.
    call(c("logs"), "put_subscription_filter", **params)
    return Created(p["FilterName"])


def _bucket_policy(c, p):
    call(c("s3"), "put_bucket_policy", Bucket=p["Bucket"], Policy=json.dumps(p["PolicyDocument"]))
    return Created(p["Bucket"])


def _topic_policy(c, p):
    for topic in p["Topics"]:
        call(c("sns"), "set_topic_attributes", TopicArn=topic, AttributeName="Policy",
             AttributeValue=json.dumps(p["PolicyDocument"]))
    return Created(",".join(p["Topics"]))


def _queue_policy(c, p):
    for url in p["Queues"]:
        call(c("sqs"), "set_queue_attributes", QueueUrl=url,
             Attributes={"Policy": json.dumps(p["PolicyDocument"])})
    return Created(",".join(p["Queues"]))


def _sns_subscription(c, p):
    arn = call(c("sns"), "subscribe", **_pick(p, "TopicArn", "Protocol", "Endpoint"))["SubscriptionArn"]
    return Created(arn)


def _delivery_stream(c, p):
    fh = c("firehose")
    call(fh, "create_delivery_stream", **p)
    arn = fh.describe_delivery_stream(DeliveryStreamName=p["DeliveryStreamName"])[
        "DeliveryStreamDescription"]["DeliveryStreamARN"]
    return Created(p["DeliveryStreamName"], {"Arn": arn})


def _glue_database(c, p):
    call(c("glue"), "create_database", **_pick(p, "CatalogId", "DatabaseInput"))
    return Created(p["DatabaseInput"]["Name"])


def _glue_table(c, p):
    call(c("glue"), "create_table", **_pick(p, "CatalogId", "DatabaseName", "TableInput"))
    return Created(p["TableInput"]["Name"])


def _work_group(c, p):
    params = _pick(p, "Name", "Description")
    if "WorkGroupConfiguration" in p:
        params["Configuration"] = p["WorkGroupConfiguration"]
    call(c("athena"), "create_work_group", **params)
    return Created(p["Name"])


def _named_query(c, p):
    qid = call(c("athena"), "create_named_query",
               **_pick(p, "Name", "Description", "Database", "QueryString", "WorkGroup"))["NamedQueryId"]
    return Created(qid)


def _alarm(c, p):
    call(c("cloudwatch"), "put_metric_alarm", **p)
    return Created(p["AlarmName"])


def _stack_set(c, p):
    params = _pick(p, "StackSetName", "Description", "TemplateURL", "TemplateBody", "Parameters",
                   "Capabilities", "PermissionModel", "AutoDeployment", "CallAs", "ManagedExecution")
    sid = call(c("cloudformation"), "create_stack_set", **params)["StackSetId"]
    return Created(sid)


def _schedule(c, p):
    arn = call(c("scheduler"), "create_schedule",
               **_pick(p, "Name", "GroupName", "Description", "ScheduleExpression", "ScheduleExpressionTimezone",
                       "FlexibleTimeWindow", "State", "Target", "KmsKeyArn", "StartDate", "EndDate",
                       "ActionAfterCompletion"))["ScheduleArn"]
    return Created(p["Name"], {"Arn": arn})


def _event_invoke_config(c, p):
    call(c("lambda"), "put_function_event_invoke_config",
         **_pick(p, "FunctionName", "Qualifier", "MaximumRetryAttempts", "MaximumEventAgeInSeconds",
                 "DestinationConfig"))
    return Created(f"{p['FunctionName']}:{p['Qualifier']}")


REPLAY: dict[str, Callable] = {
    "AWS::Logs::Destination": _destination,
    "AWS::Logs::LogStream": _log_stream,
    "AWS::Logs::SubscriptionFilter": _subscription_filter,
    "AWS::S3::BucketPolicy": _bucket_policy,
    "AWS::SNS::Subscription": _sns_subscription,
    "AWS::SNS::TopicPolicy": _topic_policy,
    "AWS::SQS::QueuePolicy": _queue_policy,
    "AWS::KinesisFirehose::DeliveryStream": _delivery_stream,
    "AWS::Glue::Database": _glue_database,
    "AWS::Glue::Table": _glue_table,
    "AWS::Athena::WorkGroup": _work_group,
    "AWS::Athena::NamedQuery": _named_query,
    "AWS::CloudWatch::Alarm": _alarm,
    "AWS::CloudFormation::StackSet": _stack_set,
    "AWS::Scheduler::Schedule": _schedule,
    "AWS::Lambda::EventInvokeConfig": _event_invoke_config,
}
NO_API_IN_MOTO = {
    "AWS::Logs::AccountPolicy": "moto has no PutAccountPolicy API",
}


def deploy(cfn, client_factory: Callable[[str], Any], template: dict, stack_name: str,
           parameters: dict[str, str], supported: set[str] | None = None,
           before_replay: Callable[[str, dict], None] | None = None) -> Deployment:
    """Create `template` in moto. `client_factory(service)` returns a boto3 client for the
    same endpoint and account as `cfn`. `before_replay(lid, props)` runs before each
    emulated resource is created (to work around moto gaps, see the tests)."""
    p = plan(template, supported)
    parameters = dict(parameters)
    for name, spec in template.get("Parameters", {}).items():
        # moto leaves the *default* of a list parameter unsplit (only passed values are
        # split), so pass list defaults explicitly.
        if name not in parameters and "Default" in spec and (
            spec.get("Type", "").startswith(("CommaDelimitedList", "List<"))
        ):
            parameters[name] = str(spec["Default"])
    cfn.create_stack(
        StackName=stack_name,
        TemplateBody=json.dumps(p.subset),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
        Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"],
    )
    stack = _wait(cfn, stack_name)
    outputs = {o["OutputKey"]: o.get("OutputValue") for o in stack.get("Outputs", [])}
    conditions = {name: outputs[out] == "true" for name, out in p.condition_outputs.items()}
    moto_resources = {
        r["LogicalResourceId"]: r.get("PhysicalResourceId", "")
        for r in cfn.describe_stack_resources(StackName=stack_name)["StackResources"]
        if "LogicalResourceId" in r  # moto lists a nameless entry when nothing was created
    }

    created: dict[str, Created] = {}
    resolved: dict[str, dict] = {}
    not_created: dict[str, str] = {}
    for lid, r in p.inspected.items():
        if "Condition" in r and not conditions[r["Condition"]]:
            not_created[lid] = f"condition {r['Condition']} is false"
        else:
            resolved[lid] = _rebuild(r["Properties"], p.leaves, outputs, conditions)
    pending = dict(p.emulated)
    while pending:
        progress = False
        for lid, r in list(pending.items()):
            if "Condition" in r and not conditions[r["Condition"]]:
                not_created[lid] = f"condition {r['Condition']} is false"
                del pending[lid]
                progress = True
                continue
            props = _rebuild(r["Properties"], p.leaves, outputs, conditions)
            needed = set(referenced_markers(props)) | (set(_depends_on(r)) & set(p.emulated))
            if needed - set(created) - set(not_created):
                continue  # wait for the resources it refers to
            props = _fill_markers(props, created)
            resolved[lid] = props
            del pending[lid]
            progress = True
            if r["Type"] in NO_API_IN_MOTO:
                not_created[lid] = NO_API_IN_MOTO[r["Type"]]
                continue
            if r["Type"] not in REPLAY:
                raise AssertionError(f"{lid}: no emulation for {r['Type']}; add one to REPLAY")
            if before_replay:
                before_replay(lid, props)
            created[lid] = REPLAY[r["Type"]](client_factory, props)
        if not progress:
            raise AssertionError(f"unresolvable references among {sorted(pending)}")

    own_outputs = {k: v for k, v in outputs.items() if not k.startswith("Emu")}
    own_outputs.update(_emulated_outputs(template, created, outputs))
    return Deployment(stack_name, own_outputs, moto_resources, created, resolved, not_created)


def _emulated_outputs(template: dict, created: dict[str, Created], outputs: dict) -> dict:
    """The template's outputs that refer to emulated resources (simple Ref / GetAtt only)."""
    res = {}
    for key, o in template.get("Outputs", {}).items():
        if key in outputs:
            continue
        v = o.get("Value")
        if isinstance(v, dict) and "Ref" in v and v["Ref"] in created:
            res[key] = created[v["Ref"]].ref
        elif isinstance(v, dict) and "Fn::GetAtt" in v:
            t = v["Fn::GetAtt"]
            lid, attr = t.split(".", 1) if isinstance(t, str) else t
            if lid in created and attr in created[lid].attrs:
                res[key] = created[lid].attrs[attr]
    return res


def _wait(cfn, stack_name: str) -> dict:
    deadline = time.time() + 60
    while True:
        stack = cfn.describe_stacks(StackName=stack_name)["Stacks"][0]
        status = stack["StackStatus"]
        if status.endswith("_COMPLETE") and "ROLLBACK" not in status:
            return stack
        if status.endswith("FAILED") or "ROLLBACK" in status or time.time() > deadline:
            events = cfn.describe_stack_events(StackName=stack_name)["StackEvents"]
            reasons = [f"{e['LogicalResourceId']}: {e.get('ResourceStatusReason')}" for e in events
                       if e.get("ResourceStatusReason")]
            raise AssertionError(f"stack {stack_name} is {status}: {reasons[:10]}")
        time.sleep(0.2)


def _rebuild(node: Any, leaves: dict[int, Leaf], outputs: dict, conditions: dict) -> Any:
    if isinstance(node, list):
        items = [_rebuild(v, leaves, outputs, conditions) for v in node]
        return [v for v in items if v is not _GONE]
    if not isinstance(node, dict):
        return node
    if node == NOVALUE:
        return _GONE
    if "@leaf" in node:
        leaf = leaves[node["@leaf"]]
        value = outputs.get(leaf.output)
        if value is None or value == SKIP:
            raise AssertionError(f"{leaf.lid}: output {leaf.output} did not resolve ({value!r})")
        return value.split(LIST_SEP) if leaf.is_list else value
    if "@if" in node:
        branch = node["yes"] if conditions[node["@if"]] else node["no"]
        return _rebuild(branch, leaves, outputs, conditions)
    out = {}
    for k, v in node.items():
        v = _rebuild(v, leaves, outputs, conditions)
        if v is not _GONE:
            out[k] = v
    return out


class _Gone:
    pass


_GONE = _Gone()


def referenced_markers(node: Any) -> list[str]:
    found: list[str] = []
    if isinstance(node, str):
        found += [m.group(1) for m in _MARKER.finditer(node)]
    elif isinstance(node, list):
        for v in node:
            found += referenced_markers(v)
    elif isinstance(node, dict):
        for v in node.values():
            found += referenced_markers(v)
    return found


def _fill_markers(node: Any, created: dict[str, Created]) -> Any:
    if isinstance(node, str):
        def sub(m: re.Match) -> str:
            c = created[m.group(1)]
            return c.attrs[m.group(2)] if m.group(2) else c.ref
        return _MARKER.sub(sub, node)
    if isinstance(node, list):
        return [_fill_markers(v, created) for v in node]
    if isinstance(node, dict):
        return {k: _fill_markers(v, created) for k, v in node.items()}
    return node
