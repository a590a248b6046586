//! Stage 4b, detect: every parsed audit row against the rules in force -> findings.
//!
//! The rules ([`crate::sigma`]) read the row through [`sigma::Event`]: the typed fields
//! extraction already parsed, and, only when a rule asks, a lax walk of the raw
//! `requestObject`/`responseObject` (no `serde_json::Value` tree; nothing is allocated
//! unless a string needs unescaping). Rows that did not parse are not evaluated: what
//! a pattern recovered from them is not the event. Rows are evaluated in parallel; the
//! findings come back in row order, then rule order.

use rayon::prelude::*;
use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use crate::audit::ParseStatus;
use crate::eks_api::ApiEvent;
use crate::extract::{ApiRow, AuditRow};
use std::cell::OnceCell;

use crate::sigma::{
    self, Body, BodyPaths, Field, List, PathTrie, RuleSet, Scalar, Trail, TrailList, Value,
};
use crate::text::Text;

/// One finding: a rule that matched a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hit {
    pub row: u32,
    pub rule: u16,
}

/// The batch's findings, by row.
#[derive(Debug, Default)]
pub struct Detections<'r> {
    pub hits: Vec<Hit>,
    /// `hits[offsets[i]..offsets[i + 1]]` are row `i`'s (empty when nothing matched).
    offsets: Vec<u32>,
    /// Rule ids, by rule index.
    ids: Vec<&'r str>,
}

impl<'r> Detections<'r> {
    /// No rules, no findings.
    pub fn none() -> Self {
        Self::default()
    }

    /// The findings of row `i`.
    pub fn of_row(&self, i: usize) -> &[Hit] {
        match (self.offsets.get(i), self.offsets.get(i + 1)) {
            (Some(&a), Some(&b)) => &self.hits[a as usize..b as usize],
            _ => &[],
        }
    }

    /// The ids of the rules that matched row `i` (the `detections` column).
    pub fn rule_ids(&self, i: usize) -> impl Iterator<Item = &'r str> + '_ {
        self.of_row(i).iter().map(|h| self.ids[h.rule as usize])
    }

    pub fn len(&self) -> usize {
        self.hits.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hits.is_empty()
    }
}

/// Rows per parallel task: enough to amortise the scheduling, few enough to balance.
const CHUNK: usize = 512;

/// Evaluate every rule on every parsed row.
pub fn detect<'r>(rules: &'r RuleSet, rows: &[AuditRow<'_>]) -> Detections<'r> {
    let ids = rules.rules.iter().map(|r| r.id.as_str()).collect();
    if rules.is_empty() || rows.is_empty() {
        return Detections {
            ids,
            ..Default::default()
        };
    }
    let per_chunk: Vec<Vec<Hit>> = rows
        .par_chunks(CHUNK)
        .enumerate()
        .map(|(c, chunk)| detect_chunk(rules, c * CHUNK, chunk))
        .collect();
    let hits: Vec<Hit> = per_chunk.into_iter().flatten().collect();
    Detections::by_row(hits, rows.len(), ids)
}

/// The rules on one chunk of rows (`first` is the chunk's first row). Not inlined: a
/// stage of the instruction profile (bench --instructions).
#[inline(never)]
fn detect_chunk(rules: &RuleSet, first: usize, chunk: &[AuditRow<'_>]) -> Vec<Hit> {
    let mut hits = Vec::new();
    let mut candidates = Vec::with_capacity(rules.len());
    for (j, row) in chunk.iter().enumerate() {
        if row.parse_status != ParseStatus::Ok {
            continue;
        }
        let e = &row.event;
        let resource = e.object_ref.as_ref().and_then(|o| o.resource.as_deref());
        let verb = e.verb.as_deref();
        rules.candidates(resource, &mut candidates);
        let ev = RowEvent::new(row, &rules.bodies);
        for &k in &candidates {
            let rule = &rules.rules[k as usize];
            let verb_ok = match (&rule.verbs, verb) {
                (None, _) => true,
                (Some(vs), Some(v)) => vs.iter().any(|x| x.eq_ignore_ascii_case(v)),
                (Some(_), None) => false,
            };
            if verb_ok && rule.matches(&ev) {
                hits.push(Hit {
                    row: (first + j) as u32,
                    rule: k,
                });
            }
        }
    }
    hits
}

impl<'r> Detections<'r> {
    /// `hits` in row order, indexed by row.
    fn by_row(hits: Vec<Hit>, rows: usize, ids: Vec<&'r str>) -> Self {
        let mut offsets = Vec::with_capacity(rows + 1);
        let mut at = 0usize;
        for i in 0..rows {
            offsets.push(at as u32);
            while at < hits.len() && hits[at].row as usize == i {
                at += 1;
            }
        }
        offsets.push(at as u32);
        Detections { hits, offsets, ids }
    }
}

/// Evaluate every `aws/cloudtrail` rule on every EKS API call (a handful per batch:
/// serial, no index).
pub fn detect_api<'r>(rules: &'r RuleSet, rows: &[ApiRow<'_>]) -> Detections<'r> {
    let ids = rules.rules.iter().map(|r| r.id.as_str()).collect();
    let mut hits = Vec::new();
    let active = if rules.cloudtrail().is_empty() {
        &[][..]
    } else {
        rows
    };
    for (i, row) in active.iter().enumerate() {
        let ev = ApiView::new(&row.event, &rules.bodies);
        for &k in rules.cloudtrail() {
            if rules.rules[k as usize].matches(&ev) {
                hits.push(Hit {
                    row: i as u32,
                    rule: k,
                });
            }
        }
    }
    Detections::by_row(hits, rows.len(), ids)
}

/// An EKS API call as `aws/cloudtrail` rules see it: its typed fields, and its
/// parameters and response walked once for every path of every rule.
pub struct ApiView<'r> {
    e: &'r ApiEvent,
    paths: &'r BodyPaths,
    bodies: [OnceCell<Vec<(u16, Text<'r>)>>; 2],
}

impl<'r> ApiView<'r> {
    pub fn new(e: &'r ApiEvent, paths: &'r BodyPaths) -> Self {
        Self {
            e,
            paths,
            bodies: Default::default(),
        }
    }

    fn body(&self, b: Body) -> &[(u16, Text<'r>)] {
        let (i, raw) = match b {
            Body::Parameters => (0, self.e.request_parameters.as_deref()),
            Body::Elements => (1, self.e.response_elements.as_deref()),
            // audit bodies: not an API call's
            Body::Request | Body::Response => return &[],
        };
        self.bodies[i].get_or_init(|| {
            let mut out = Vec::new();
            if let Some(r) = raw {
                collect(self.paths.trie(b), 0, r, &mut out);
            }
            out
        })
    }
}

impl sigma::Event for ApiView<'_> {
    fn any_value(&self, field: &Field, f: &mut dyn FnMut(Value<'_>) -> bool) -> bool {
        let e = self.e;
        let c = &e.caller;
        let t = &e.target;
        let b = |v: Option<bool>| v.map(|v| if v { "true" } else { "false" });
        let list = |v: Option<&Vec<String>>, f: &mut dyn FnMut(Value<'_>) -> bool| {
            v.is_some_and(|v| v.iter().any(|s| f(Value::Str(s))))
        };
        let scalar: Option<&str> = match field {
            Field::Trail(tf) => match tf {
                Trail::EventName => Some(&e.event_name),
                Trail::EventSource => Some(&e.event_source),
                Trail::EventType => e.event_type.as_deref(),
                Trail::EventId => Some(&e.event_id),
                Trail::AwsRegion => e.region.as_deref(),
                Trail::RecipientAccountId => e.account_id.as_deref(),
                Trail::SourceIp => e.source_ip.as_deref(),
                Trail::UserAgent => e.user_agent.as_deref(),
                Trail::ErrorCode => e.error_code.as_deref(),
                Trail::ErrorMessage => e.error_message.as_deref(),
                Trail::RequestId => e.request_id.as_deref(),
                Trail::CallerType => c.kind.as_deref(),
                Trail::CallerArn => c.arn.as_deref(),
                Trail::CallerAccountId => c.account_id.as_deref(),
                Trail::CallerPrincipalId => c.principal_id.as_deref(),
                Trail::CallerAccessKeyId => c.access_key_id.as_deref(),
                Trail::CallerUserName => c.user_name.as_deref(),
                Trail::CallerRoleArn => c.role_arn.as_deref(),
                Trail::Cluster => e.cluster.as_deref(),
                Trail::TargetPrincipalArn => t.principal_arn.as_deref(),
                Trail::TargetPrincipalAccountId => t.principal_account_id.as_deref(),
                Trail::AccessEntryType => t.access_entry_type.as_deref(),
                Trail::AccessEntryUsername => t.access_entry_username.as_deref(),
                Trail::AccessPolicyArn => t.access_policy_arn.as_deref(),
                Trail::AccessScopeType => t.access_scope_type.as_deref(),
                Trail::PodIdentityNamespace => t.pod_identity_namespace.as_deref(),
                Trail::PodIdentityServiceAccount => t.pod_identity_service_account.as_deref(),
                Trail::AuditLoggingEnabled => b(t.audit_logging_enabled),
                Trail::AuthenticatorLoggingEnabled => b(t.authenticator_logging_enabled),
                Trail::EndpointPublicAccess => b(t.endpoint_public_access),
                Trail::AuthenticationMode => t.authentication_mode.as_deref(),
                Trail::BootstrapClusterCreatorAdmin => b(t.bootstrap_cluster_creator_admin),
            },
            Field::TrailList(l) => {
                return match l {
                    TrailList::KubernetesGroups => list(t.kubernetes_groups.as_ref(), f),
                    TrailList::AccessScopeNamespaces => list(t.access_scope_namespaces.as_ref(), f),
                    TrailList::PublicAccessCidrs => list(t.public_access_cidrs.as_ref(), f),
                }
            }
            Field::Body(bp) => {
                return self
                    .body(bp.body)
                    .iter()
                    .any(|(id, v)| *id == bp.id && f(Value::Str(v)))
            }
            // audit fields: never compiled into an aws/cloudtrail rule
            _ => None,
        };
        scalar.is_some_and(|v| f(Value::Str(v)))
    }
}

/// An audit row as the rules see it. What is not a typed field yet (lists, annotations,
/// bodies) is parsed on first use and kept for the row's other rules: each body is
/// walked once, for every path of every rule at the same time.
pub struct RowEvent<'r, 'a> {
    row: &'r AuditRow<'a>,
    paths: &'r BodyPaths,
    lists: [OnceCell<Vec<Text<'a>>>; 3],
    annotations: OnceCell<Vec<(Text<'a>, Text<'a>)>>,
    bodies: [OnceCell<Vec<(u16, Text<'a>)>>; 2],
}

impl<'r, 'a> RowEvent<'r, 'a> {
    pub fn new(row: &'r AuditRow<'a>, paths: &'r BodyPaths) -> Self {
        Self {
            row,
            paths,
            lists: Default::default(),
            annotations: OnceCell::new(),
            bodies: Default::default(),
        }
    }

    fn list(&self, l: List) -> &[Text<'a>] {
        let e = &self.row.event;
        let (i, raw) = match l {
            List::UserGroups => (0, e.user.as_ref().and_then(|u| u.groups)),
            List::ImpersonatedGroups => (1, e.impersonated_user.as_ref().and_then(|u| u.groups)),
            List::SourceIps => (2, e.source_ips),
        };
        self.lists[i].get_or_init(|| raw.map(|r| strings(r.get())).unwrap_or_default())
    }

    fn annotations(&self) -> &[(Text<'a>, Text<'a>)] {
        self.annotations.get_or_init(|| {
            let mut out = Vec::new();
            if let Some(a) = self.row.event.annotations {
                members(a.get(), &mut |k, v| {
                    if let Some(t) = scalar_text(v) {
                        out.push((k, t));
                    }
                });
            }
            out
        })
    }

    fn body(&self, b: Body) -> &[(u16, Text<'a>)] {
        let (i, raw) = match b {
            Body::Request => (0, self.row.event.request_object),
            Body::Response => (1, self.row.event.response_object),
            Body::Parameters | Body::Elements => return &[],
        };
        self.bodies[i].get_or_init(|| {
            let mut out = Vec::new();
            if let Some(r) = raw {
                collect(self.paths.trie(b), 0, r.get(), &mut out);
            }
            out
        })
    }
}

impl sigma::Event for RowEvent<'_, '_> {
    fn any_value(&self, field: &Field, f: &mut dyn FnMut(Value<'_>) -> bool) -> bool {
        let e = &self.row.event;
        let user = e.user.as_ref();
        let o = e.object_ref.as_ref();
        let rs = e.response_status.as_ref();
        let scalar: Option<&str> = match field {
            Field::Scalar(sc) => match sc {
                Scalar::Verb => txt(e.verb.as_ref()),
                Scalar::Stage => txt(e.stage.as_ref()),
                Scalar::Level => txt(e.level.as_ref()),
                Scalar::AuditId => txt(e.audit_id.as_ref()),
                Scalar::RequestUri => txt(e.request_uri.as_ref()),
                Scalar::UserAgent => txt(e.user_agent.as_ref()),
                Scalar::Username => txt(user.and_then(|u| u.username.as_ref())),
                Scalar::UserUid => txt(user.and_then(|u| u.uid.as_ref())),
                Scalar::ImpersonatedUsername => txt(e
                    .impersonated_user
                    .as_ref()
                    .and_then(|u| u.username.as_ref())),
                Scalar::ObjectResource => txt(o.and_then(|o| o.resource.as_ref())),
                Scalar::ObjectSubresource => txt(o.and_then(|o| o.subresource.as_ref())),
                Scalar::ObjectNamespace => txt(o.and_then(|o| o.namespace.as_ref())),
                Scalar::ObjectName => txt(o.and_then(|o| o.name.as_ref())),
                Scalar::ObjectApiGroup => txt(o.and_then(|o| o.api_group.as_ref())),
                Scalar::ObjectApiVersion => txt(o.and_then(|o| o.api_version.as_ref())),
                Scalar::ResponseCode => {
                    return rs
                        .and_then(|r| r.code)
                        .is_some_and(|c| f(Value::Int(c.into())))
                }
                Scalar::ResponseStatus => txt(rs.and_then(|r| r.status.as_ref())),
                Scalar::ResponseReason => txt(rs.and_then(|r| r.reason.as_ref())),
                Scalar::ResponseMessage => txt(rs.and_then(|r| r.message.as_ref())),
            },
            Field::List(l) => return self.list(*l).iter().any(|t| f(Value::Str(t))),
            Field::Extra(key) => {
                let Some(x) = e.user.as_ref().and_then(|u| u.extra.as_ref()) else {
                    return false;
                };
                return x
                    .entries()
                    .filter(|en| en.key == key)
                    .flat_map(|en| en.values.unwrap_or_default().iter().flatten())
                    .any(|t| f(Value::Str(t)));
            }
            Field::Annotation(key) => {
                return self
                    .annotations()
                    .iter()
                    .any(|(k, v)| **k == **key && f(Value::Str(v)))
            }
            Field::Body(bp) => {
                return self
                    .body(bp.body)
                    .iter()
                    .any(|(id, v)| *id == bp.id && f(Value::Str(v)))
            }
            // CloudTrail fields: never compiled into a kubernetes/audit rule
            Field::Trail(_) | Field::TrailList(_) => None,
        };
        scalar.is_some_and(|v| f(Value::Str(v)))
    }
}

fn txt<'t>(t: Option<&'t Text<'_>>) -> Option<&'t str> {
    t.map(|t| &**t)
}

/// The strings of a JSON array (stopping, as the encoder does, at an element that is
/// not a string or null).
fn strings(raw: &str) -> Vec<Text<'_>> {
    struct Seq;
    impl<'de> Visitor<'de> for Seq {
        type Value = Vec<Text<'de>>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an array of strings")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            // an element of another type ends the list here, keeping what came before
            while let Ok(Some(v)) = seq.next_element::<Option<Text<'de>>>() {
                out.extend(v);
            }
            Ok(out)
        }
    }
    if !raw.starts_with('[') {
        return Vec::new();
    }
    let mut de = serde_json::Deserializer::from_str(raw);
    de.deserialize_seq(Seq).unwrap_or_default()
}

/// Calls `f` with every member (key, raw value) of the object `raw` (none when `raw`
/// is not an object, or from where it stops being valid JSON).
fn members<'a>(raw: &'a str, f: &mut dyn FnMut(Text<'a>, &'a str)) {
    struct Obj<'f, 'g, 'a>(&'f mut (dyn FnMut(Text<'a>, &'a str) + 'g));
    impl<'de: 'a, 'a> Visitor<'de> for Obj<'_, '_, 'a> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<(), A::Error> {
            while let Some(k) = m.next_key::<Text<'de>>()? {
                let v: &'de RawValue = m.next_value()?;
                (self.0)(k, v.get());
            }
            Ok(())
        }
    }
    if raw.starts_with('{') {
        let mut de = serde_json::Deserializer::from_str(raw);
        let _ = de.deserialize_map(Obj(f));
    }
}

/// Calls `f` with each element of the JSON array `raw`.
fn elements<'a>(raw: &'a str, f: &mut dyn FnMut(&'a str)) {
    struct Arr<'f, 'g, 'a>(&'f mut (dyn FnMut(&'a str) + 'g));
    impl<'de: 'a, 'a> Visitor<'de> for Arr<'_, '_, 'a> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an array")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<(), A::Error> {
            while let Some(v) = s.next_element::<&'de RawValue>()? {
                (self.0)(v.get());
            }
            Ok(())
        }
    }
    let mut de = serde_json::Deserializer::from_str(raw);
    let _ = de.deserialize_seq(Arr(f));
}

/// A JSON scalar as a rule value: strings unescaped, numbers and booleans as their
/// text; `null`, objects and arrays are no value (SQL: `json_extract_scalar`).
fn scalar_text(raw: &str) -> Option<Text<'_>> {
    match raw.as_bytes().first() {
        Some(b'"') => serde_json::from_str::<Text<'_>>(raw).ok(),
        Some(b'{' | b'[' | b'n') | None => None,
        Some(_) => Some(Text(std::borrow::Cow::Borrowed(raw))),
    }
}

/// The values every path of `trie` reaches from `node`, whose value is `raw`, with
/// SQL/JSON lax semantics (`lax $.a.b[*]`): an array met on the way is unwrapped one
/// level (each element object is followed), a final array is flattened one level, and
/// only scalars are values. One pass over the body for all paths.
fn collect<'a>(trie: &PathTrie, node: u32, raw: &'a str, out: &mut Vec<(u16, Text<'a>)>) {
    let n = &trie.nodes[node as usize];
    if let Some(id) = n.terminal {
        if raw.starts_with('[') {
            elements(raw, &mut |el| out.extend(scalar_text(el).map(|t| (id, t))));
        } else {
            out.extend(scalar_text(raw).map(|t| (id, t)));
        }
    }
    if n.children.is_empty() {
        return;
    }
    let step = |obj: &'a str, out: &mut Vec<(u16, Text<'a>)>| {
        members(obj, &mut |k, v| {
            if let Some(c) = trie.child(node, &k) {
                collect(trie, c, v, out);
            }
        })
    };
    match raw.as_bytes().first() {
        Some(b'{') => step(raw, out),
        Some(b'[') => {
            let mut objs = Vec::new();
            elements(raw, &mut |el| {
                if el.starts_with('{') {
                    objs.push(el);
                }
            });
            for o in objs {
                step(o, out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode;
    use crate::extract::{extract, Context};
    use crate::testkit::{audit_envelope, event};

    fn rules(detection: &str) -> RuleSet {
        let y = format!(
            "title: t\nid: r1\nlevel: high\nlogsource: {{product: kubernetes, service: audit}}\ndetection:\n{detection}"
        );
        RuleSet::from_files([("t.yml", y.as_str())]).unwrap()
    }

    fn hits(rules: &RuleSet, fields: serde_json::Value) -> usize {
        let j = audit_envelope("111122223333", &[event("a", fields)]);
        let envs = decode::envelopes(j.as_bytes()).unwrap();
        let x = extract(&envs, Context::new(None));
        detect(rules, &x.rows).len()
    }

    #[test]
    fn body_paths_walk_arrays_laxly() {
        use serde_json::json;
        let r = rules("  s:\n    requestObject.spec.containers.securityContext.privileged: true\n  condition: s\n");
        let pod = |p: bool| {
            json!({"requestObject": {"spec": {"containers": [
            {"name": "a"}, {"name": "b", "securityContext": {"privileged": p}}]}}})
        };
        assert_eq!(hits(&r, pod(true)), 1);
        assert_eq!(hits(&r, pod(false)), 0);
        let r = rules("  s:\n    requestObject.spec.containers.securityContext.capabilities.add: sys_admin\n  condition: s\n");
        let caps = json!({"requestObject": {"spec": {"containers": [
            {"securityContext": {"capabilities": {"add": ["NET_RAW", "SYS_ADMIN"]}}}]}}});
        assert_eq!(hits(&r, caps), 1);
        let r =
            rules("  s:\n    requestObject.subjects.name: 'system:anonymous'\n  condition: s\n");
        let b = json!({"requestObject": {"subjects": [{"kind": "Group", "name": "x"}, {"kind": "User", "name": "system:\u{61}nonymous"}]}});
        assert_eq!(hits(&r, b), 1);
    }

    #[test]
    fn typed_fields_lists_extra_and_annotations() {
        use serde_json::json;
        let r = rules("  s:\n    user.groups: 'system:masters'\n    user.extra.sessionName: alice\n    annotations.authorization.k8s.io/decision: allow\n    responseStatus.code: 200\n  condition: s\n");
        let ev = |g: &str| {
            json!({"user": {"username": "u", "groups": ["a", g],
            "extra": {"sessionName": ["alice"]}},
            "annotations": {"authorization.k8s.io/decision": "allow"},
            "responseStatus": {"code": 200}})
        };
        assert_eq!(hits(&r, ev("system:masters")), 1);
        assert_eq!(hits(&r, ev("system:authenticated")), 0);
    }

    #[test]
    fn unparseable_rows_are_not_evaluated() {
        let r = rules("  s:\n    verb: list\n  condition: s\n");
        let j = audit_envelope(
            "111122223333",
            &["{\"verb\":\"list\",\"auditID\":".to_owned()],
        );
        let envs = decode::envelopes(j.as_bytes()).unwrap();
        let x = extract(&envs, Context::new(None));
        assert_eq!(x.rows.len(), 1);
        assert!(detect(&r, &x.rows).is_empty());
    }

    #[test]
    fn findings_come_back_by_row() {
        let r = rules("  s:\n    verb: list\n  condition: s\n");
        let msgs: Vec<String> = (0..1500)
            .map(|i| {
                let verb = if i % 3 == 0 { "list" } else { "get" };
                event(&i.to_string(), serde_json::json!({ "verb": verb }))
            })
            .collect();
        let j = audit_envelope("111122223333", &msgs);
        let envs = decode::envelopes(j.as_bytes()).unwrap();
        let x = extract(&envs, Context::new(None));
        let d = detect(&r, &x.rows);
        assert_eq!(d.len(), 500);
        for i in 0..1500 {
            let want: Vec<&str> = if i % 3 == 0 { vec!["r1"] } else { vec![] };
            assert_eq!(d.rule_ids(i).collect::<Vec<_>>(), want, "row {i}");
        }
    }
}
