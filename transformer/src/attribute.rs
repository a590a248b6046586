//! Stage 4, attribute: each row's identity -> its attribution columns, against the
//! batch's filled [`SessionIndex`]. The rules are the resolver's
//! ([`resolver::attribute`]); this stage only applies them to the batch and counts the
//! outcome per status.

use std::borrow::Cow;

use resolver::{Attribution, AttributionStatus, SessionIndex};

use crate::extract::{ApiRow, AuditRow};
use crate::metrics::Metrics;
use resolver::identity::Identity;

/// One attribution per row, in row order. Access-key attributions borrow the index's
/// resolved chains (no copy per event).
#[inline(never)] // a stage of the instruction profile (bench --instructions)
pub fn attribute<'i>(
    index: &'i SessionIndex,
    rows: &'i [AuditRow<'_>],
    metrics: &mut Metrics,
) -> Vec<Cow<'i, Attribution<'i>>> {
    rows.iter()
        .map(|r| {
            let a = index.attribute(&r.identity, r.username(), r.event_ms);
            count(metrics, a.status);
            a
        })
        .collect()
}

/// One attribution per EKS API call, of its caller (`identities[i]` is row `i`'s):
/// the same rules as for an audit event's user. Not counted in the `attribution_*`
/// metrics, which are about `eks_audit` rows.
pub fn attribute_api<'i>(
    index: &'i SessionIndex,
    rows: &'i [ApiRow<'_>],
    identities: &'i [Identity<'_>],
) -> Vec<Cow<'i, Attribution<'i>>> {
    rows.iter()
        .zip(identities)
        .map(|(r, id)| index.attribute(id, r.event.caller.arn.as_deref(), r.event.event_ms))
        .collect()
}

fn count(m: &mut Metrics, s: AttributionStatus) {
    match s {
        AttributionStatus::Resolved => m.attribution_resolved += 1,
        AttributionStatus::Pending => m.attribution_pending += 1,
        AttributionStatus::Ambiguous => m.attribution_ambiguous += 1,
        AttributionStatus::Conflict => m.attribution_conflict += 1,
        AttributionStatus::NotApplicable => m.attribution_not_applicable += 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode;
    use crate::extract::extract;
    use resolver::PrincipalType;

    #[test]
    fn each_row_gets_its_attribution_and_counts_add_up() {
        let msgs = [
            r#"{"kind":"Event","auditID":"1","user":{"username":"system:anonymous"}}"#,
            r#"{"kind":"Event","auditID":"2","user":{"username":"arn:aws:iam::111122223333:user/jdoe"}}"#,
            r#"{"kind":"Event","auditID":"3","user":{"username":"arn:aws:sts::111122223333:assumed-role/r/s","extra":{"accessKeyId":["ASIAUNKNOWN00000"]}}}"#,
        ];
        let json = crate::testkit::audit_envelope("111122223333", &msgs.map(str::to_string));
        let envs = decode::envelopes(json.as_bytes()).unwrap();
        let x = extract(&envs, crate::extract::Context::new(None));
        let index = SessionIndex::new();
        let mut m = Metrics::default();
        let a = attribute(&index, &x.rows, &mut m);
        assert_eq!(a[0].principal_type, PrincipalType::Anonymous);
        assert_eq!(a[1].principal_name.as_deref(), Some("jdoe"));
        assert_eq!(a[1].status, AttributionStatus::Resolved);
        assert_eq!(a[2].status, AttributionStatus::Pending);
        assert_eq!(
            (
                m.attribution_not_applicable,
                m.attribution_resolved,
                m.attribution_pending
            ),
            (1, 1, 1)
        );
    }
}
