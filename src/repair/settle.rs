//! Settling a chunk whose replicas differ, field by field of each point, as InfluxDB itself merges
//! writes of one point: a point or a field some replicas lack is copied to them (writes are
//! idempotent upserts that set only the fields they name, so a union is safe), a value that
//! differs is settled by the majority of all the replicas, and a field with no majority leaves its
//! point as a conflict for an operator (its other fields are still settled). Pure: the caller reads
//! the points and writes what this decides.

use super::{lines::Encoded, worker::Points};

/// What to write where, and what cannot be decided.
#[derive(Debug, Default)]
pub struct Settlement {
    /// Per replica (in the order given): the lines to write to it.
    pub writes: Vec<(Vec<u8>, Encoded)>,
    /// Points whose replicas disagree with no majority.
    pub conflicts: Vec<Disagreement>,
}

/// A point whose replicas disagree with no majority.
#[derive(Debug, PartialEq, Eq)]
pub struct Disagreement {
    /// Its series key, escaped.
    pub key: Vec<u8>,
    /// Its timestamp.
    pub time: i64,
    /// Each replica's field set (`None`: it lacks the point).
    pub values: Vec<Option<Vec<u8>>>,
}

/// Decides, from each replica's points of one chunk, what each replica must be written.
pub fn settle(replicas: &[Points]) -> Settlement {
    let mut settlement = Settlement {
        writes: replicas.iter().map(|_| Default::default()).collect(),
        conflicts: Vec::new(),
    };
    let mut keys: Vec<&(Vec<u8>, i64)> = replicas.iter().flat_map(|p| p.keys()).collect();
    keys.sort_unstable();
    keys.dedup();
    for key in keys {
        let values: Vec<Option<&Vec<u8>>> = replicas.iter().map(|p| p.get(key)).collect();
        let fields: Vec<Vec<(&[u8], &[u8])>> = values
            .iter()
            .map(|v| v.map(|set| fields(set)).unwrap_or_default())
            .collect();
        let mut names: Vec<&[u8]> = fields.iter().flatten().map(|(name, _)| *name).collect();
        names.sort_unstable();
        names.dedup();
        // What each replica must be written: the fields whose settled value it lacks.
        let mut owed: Vec<Vec<u8>> = vec![Vec::new(); replicas.len()];
        let mut undecided = false;
        for name in names {
            let held: Vec<Option<&[u8]>> = fields
                .iter()
                .map(|set| set.iter().find(|(n, _)| *n == name).map(|(_, v)| *v))
                .collect();
            let Some(value) = winner(&held) else {
                undecided = true;
                continue;
            };
            for (i, own) in held.iter().enumerate() {
                if *own != Some(value) {
                    let set = &mut owed[i];
                    if !set.is_empty() {
                        set.push(b',');
                    }
                    set.extend_from_slice(name);
                    set.push(b'=');
                    set.extend_from_slice(value);
                }
            }
        }
        if undecided {
            settlement.conflicts.push(Disagreement {
                key: key.0.clone(),
                time: key.1,
                values: values.iter().map(|v| v.cloned()).collect(),
            });
        }
        for (i, set) in owed.iter().enumerate() {
            if set.is_empty() {
                continue;
            }
            let (body, encoded) = &mut settlement.writes[i];
            body.extend_from_slice(&key.0);
            body.push(b' ');
            body.extend_from_slice(set);
            body.push(b' ');
            body.extend_from_slice(key.1.to_string().as_bytes());
            body.push(b'\n');
            encoded.add(key.1);
        }
    }
    settlement
}

/// A field set as line protocol writes it (`a=1,b="x,y",c\,d=2i`), cut into its fields, each
/// as its escaped name and its value as written.
fn fields(set: &[u8]) -> Vec<(&[u8], &[u8])> {
    let mut fields = Vec::new();
    let (mut start, mut equals) = (0, None);
    let (mut quoted, mut escaped) = (false, false);
    for (i, &b) in set.iter().enumerate() {
        match b {
            _ if escaped => escaped = false,
            b'\\' => escaped = true,
            b'"' if equals.is_some() => quoted = !quoted,
            b'=' if !quoted && equals.is_none() => equals = Some(i),
            b',' if !quoted => {
                if let Some(eq) = equals {
                    fields.push((&set[start..eq], &set[eq + 1..i]));
                }
                start = i + 1;
                equals = None;
            }
            _ => {}
        }
    }
    if let Some(eq) = equals {
        fields.push((&set[start..eq], &set[eq + 1..]));
    }
    fields
}

/// The value every replica should hold: the only one present, or the one held by more than half
/// of all the replicas; `None` when there is no such value.
fn winner<'v>(values: &[Option<&'v [u8]>]) -> Option<&'v [u8]> {
    let present: Vec<&[u8]> = values.iter().flatten().copied().collect();
    let first = *present.first()?;
    if present.iter().all(|v| *v == first) {
        return Some(first);
    }
    present
        .iter()
        .find(|candidate| present.iter().filter(|v| v == candidate).count() * 2 > values.len())
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn points(entries: &[(&str, i64, &str)]) -> Points {
        entries
            .iter()
            .map(|(key, t, v)| ((key.as_bytes().to_vec(), *t), v.as_bytes().to_vec()))
            .collect()
    }

    fn text(settlement: &Settlement, i: usize) -> String {
        String::from_utf8(settlement.writes[i].0.clone()).unwrap()
    }

    #[test]
    fn a_missing_point_is_copied_and_a_minority_value_is_overwritten() {
        let a = points(&[("m,k=1", 1, "v=1"), ("m,k=1", 2, "v=2")]);
        let b = points(&[("m,k=1", 1, "v=1"), ("m,k=1", 2, "v=9")]);
        let c = points(&[("m,k=1", 2, "v=2")]);
        let settled = settle(&[a, b, c]);
        assert_eq!(text(&settled, 0), "");
        assert_eq!(text(&settled, 1), "m,k=1 v=2 2\n");
        assert_eq!(text(&settled, 2), "m,k=1 v=1 1\n");
        assert_eq!(settled.writes[2].1.points, 1);
        assert!(settled.conflicts.is_empty());
    }

    #[test]
    fn two_replicas_that_disagree_are_a_conflict_not_a_choice() {
        let a = points(&[("m", 1, "v=1"), ("m", 2, "v=2")]);
        let b = points(&[("m", 1, "v=5")]);
        let settled = settle(&[a, b]);
        assert_eq!(text(&settled, 0), "");
        assert_eq!(text(&settled, 1), "m v=2 2\n", "the union is still made");
        assert_eq!(settled.conflicts.len(), 1);
        let conflict = &settled.conflicts[0];
        assert_eq!((conflict.key.as_slice(), conflict.time), (&b"m"[..], 1));
        assert_eq!(
            conflict.values,
            vec![Some(b"v=1".to_vec()), Some(b"v=5".to_vec())]
        );
    }

    #[test]
    fn two_different_values_and_a_missing_one_among_three_have_no_majority() {
        let a = points(&[("m", 1, "v=1")]);
        let b = points(&[("m", 1, "v=2")]);
        let settled = settle(&[a, b, Points::new()]);
        assert_eq!(settled.conflicts.len(), 1);
        assert!(settled.writes.iter().all(|(body, _)| body.is_empty()));
    }

    #[test]
    fn replicas_holding_different_fields_of_one_point_are_merged() {
        // Two writes of one point, each setting one field, each missed by one replica.
        let a = points(&[("m", 1, "a=1,s=\"x,y=z\\\"\"")]);
        let b = points(&[("m", 1, "b=2i")]);
        let c = points(&[("m", 1, "a=1,b=2i,s=\"x,y=z\\\"\"")]);
        let settled = settle(&[a, b, c]);
        assert!(settled.conflicts.is_empty(), "{:?}", settled.conflicts);
        assert_eq!(text(&settled, 0), "m b=2i 1\n");
        assert_eq!(text(&settled, 1), "m a=1,s=\"x,y=z\\\"\" 1\n");
        assert_eq!(text(&settled, 2), "");
        // A field with no majority is a conflict; the point's other fields are still settled.
        let a = points(&[("m", 1, "a=1,b=1")]);
        let b = points(&[("m", 1, "a=2")]);
        let settled = settle(&[a, b]);
        assert_eq!(settled.conflicts.len(), 1);
        assert_eq!(text(&settled, 1), "m b=1 1\n");
    }

    #[test]
    fn a_field_set_is_cut_at_commas_outside_strings_and_escapes() {
        let set = br#"a=1,s="p,q=r\"",k\,e\=y=2i,t=true"#;
        let cut: Vec<(String, String)> = fields(set)
            .iter()
            .map(|(n, v)| {
                (
                    String::from_utf8_lossy(n).into_owned(),
                    String::from_utf8_lossy(v).into_owned(),
                )
            })
            .collect();
        assert_eq!(
            cut,
            [
                ("a".into(), "1".into()),
                ("s".into(), r#""p,q=r\"""#.into()),
                (r"k\,e\=y".into(), "2i".into()),
                ("t".into(), "true".into()),
            ]
        );
    }

    #[test]
    fn equal_replicas_need_nothing() {
        let a = points(&[("m", 1, "v=1")]);
        let settled = settle(&[a.clone(), a.clone(), a]);
        assert!(settled.writes.iter().all(|(body, _)| body.is_empty()));
        assert!(settled.conflicts.is_empty());
    }
}
