//! Decoding an object's `spec` with its long lists cut where the rules stop reading: the
//! elements of `volumes`, `volumeClaimTemplates`, `containers`, `initContainers` and
//! `ephemeralContainers` past the first [`KEEP`] are skipped unread (`IgnoredAny`, no
//! allocation) instead of being decoded into k8s-openapi's types.
//!
//! The rules read at most [`MAX_VOLUMES`] pod volumes and claim templates of one object and say
//! the rest were not judged; they read no container. [`KEEP`] is one more than that, so a rule
//! still sees that a list was longer than it reads. Without the cut, a pod of 8 MiB of
//! ephemeral volumes cost about 250 ms of CPU to decode alone (issue 28: every review within
//! 100 ms). Everything else decodes exactly as k8s-openapi decodes it: this is a
//! pass-through [`Deserializer`] (after `serde_ignored`'s way of wrapping one), which only
//! notes the key each value sits under.

use std::fmt;

use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, IgnoredAny, MapAccess, SeqAccess, Visitor,
};

use crate::policy::limits::MAX_VOLUMES;

/// Elements kept of a cut list.
pub const KEEP: usize = MAX_VOLUMES + 1;

/// The keys whose list values are cut (in any object of the kinds table, at any depth).
const CUT_KEYS: &[&str] = &[
    "volumes",
    "volumeClaimTemplates",
    "containers",
    "initContainers",
    "ephemeralContainers",
];

/// `Option<T>` decoded with the lists of [`CUT_KEYS`] cut to [`KEEP`] elements (for
/// `#[serde(deserialize_with)]`).
pub fn option<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: de::Deserialize<'de>,
{
    de::Deserialize::deserialize(Cut { de: d, keep: None })
}

/// A deserializer whose value, when a sequence, keeps `keep` elements.
struct Cut<D> {
    de: D,
    keep: Option<usize>,
}

/// The methods of a pass-through [`Deserializer`] over `self.de`: each hands the inner
/// deserializer the visitor wrapped by `$wrap` (an expression of `self` and `visitor`).
macro_rules! pass_through {
    (|$this:ident, $visitor:ident| $wrap:expr) => {
        pass_through! {
            @methods |$this, $visitor| $wrap;
            deserialize_any(), deserialize_bool(), deserialize_i8(), deserialize_i16(),
            deserialize_i32(), deserialize_i64(), deserialize_i128(), deserialize_u8(),
            deserialize_u16(), deserialize_u32(), deserialize_u64(), deserialize_u128(),
            deserialize_f32(), deserialize_f64(), deserialize_char(), deserialize_str(),
            deserialize_string(), deserialize_bytes(), deserialize_byte_buf(),
            deserialize_option(), deserialize_unit(), deserialize_seq(), deserialize_map(),
            deserialize_identifier(), deserialize_ignored_any(),
            deserialize_unit_struct(name: &'static str),
            deserialize_newtype_struct(name: &'static str),
            deserialize_tuple(len: usize),
            deserialize_tuple_struct(name: &'static str, len: usize),
            deserialize_struct(name: &'static str, fields: &'static [&'static str]),
            deserialize_enum(name: &'static str, variants: &'static [&'static str]),
        }

        fn is_human_readable(&self) -> bool {
            self.de.is_human_readable()
        }
    };
    (@methods |$this:ident, $visitor:ident| $wrap:expr;
        $($method:ident($($arg:ident: $ty:ty),*)),* $(,)?) => {$(
        fn $method<V: Visitor<'de>>($this, $($arg: $ty,)* $visitor: V) -> Result<V::Value, D::Error> {
            let wrapped = $wrap;
            $this.de.$method($($arg,)* wrapped)
        }
    )*};
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Cut<D> {
    type Error = D::Error;

    pass_through!(|self, visitor| Visit {
        v: visitor,
        keep: self.keep
    });
}

/// The visitor of a [`Cut`] value: maps and sequences are walked through [`Map`] and [`Seq`],
/// everything else goes to the wrapped visitor unchanged.
struct Visit<V> {
    v: V,
    keep: Option<usize>,
}

macro_rules! visit {
    ($($method:ident($ty:ty)),* $(,)?) => {$(
        fn $method<E: de::Error>(self, value: $ty) -> Result<V::Value, E> {
            self.v.$method(value)
        }
    )*};
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Visit<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        self.v.expecting(f)
    }

    visit! {
        visit_bool(bool), visit_i8(i8), visit_i16(i16), visit_i32(i32), visit_i64(i64),
        visit_i128(i128), visit_u8(u8), visit_u16(u16), visit_u32(u32), visit_u64(u64),
        visit_u128(u128), visit_f32(f32), visit_f64(f64), visit_char(char), visit_str(&str),
        visit_borrowed_str(&'de str), visit_string(String), visit_bytes(&[u8]),
        visit_borrowed_bytes(&'de [u8]), visit_byte_buf(Vec<u8>),
    }

    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        self.v.visit_none()
    }

    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.v.visit_unit()
    }

    fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<V::Value, D2::Error> {
        self.v.visit_some(Cut {
            de: d,
            keep: self.keep,
        })
    }

    fn visit_newtype_struct<D2: Deserializer<'de>>(self, d: D2) -> Result<V::Value, D2::Error> {
        self.v.visit_newtype_struct(Cut {
            de: d,
            keep: self.keep,
        })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        self.v.visit_seq(Seq {
            seq,
            keep: self.keep,
            seen: 0,
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.v.visit_map(Map { map, cut: false })
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        // No list the rules read sits under an enum of k8s-openapi's types.
        self.v.visit_enum(data)
    }
}

/// A seed whose value is decoded through [`Cut`].
struct Seed<S> {
    seed: S,
    keep: Option<usize>,
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Seed<S> {
    type Value = S::Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<S::Value, D::Error> {
        self.seed.deserialize(Cut {
            de: d,
            keep: self.keep,
        })
    }
}

struct Seq<A> {
    seq: A,
    keep: Option<usize>,
    seen: usize,
}

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for Seq<A> {
    type Error = A::Error;

    fn next_element_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, A::Error> {
        if self.keep.is_some_and(|k| self.seen >= k) {
            // The rest is read past (the input must still be consumed), not decoded.
            while self.seq.next_element::<IgnoredAny>()?.is_some() {}
            return Ok(None);
        }
        self.seen += 1;
        self.seq.next_element_seed(Seed { seed, keep: None })
    }

    fn size_hint(&self) -> Option<usize> {
        let hint = self.seq.size_hint();
        match self.keep {
            Some(k) => hint.map(|h| h.min(k.saturating_sub(self.seen))),
            None => hint,
        }
    }
}

struct Map<A> {
    map: A,
    /// Whether the last key read is one of [`CUT_KEYS`].
    cut: bool,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Map<A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        self.cut = false;
        self.map.next_key_seed(Key {
            seed,
            cut: &mut self.cut,
        })
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, A::Error> {
        let keep = self.cut.then_some(KEEP);
        self.map.next_value_seed(Seed { seed, keep })
    }

    fn size_hint(&self) -> Option<usize> {
        self.map.size_hint()
    }
}

/// A key's seed that notes whether the key is one of [`CUT_KEYS`].
struct Key<'a, S> {
    seed: S,
    cut: &'a mut bool,
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Key<'_, S> {
    type Value = S::Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<S::Value, D::Error> {
        self.seed.deserialize(KeyDe {
            de: d,
            cut: self.cut,
        })
    }
}

/// The key's deserializer: every way of asking for the key reaches [`KeyVisit`].
struct KeyDe<'a, D> {
    de: D,
    cut: &'a mut bool,
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for KeyDe<'_, D> {
    type Error = D::Error;

    pass_through!(|self, visitor| KeyVisit {
        v: visitor,
        cut: self.cut
    });
}

/// Notes whether a key (a string: JSON keys are) is one of [`CUT_KEYS`], then hands it on.
struct KeyVisit<'a, V> {
    v: V,
    cut: &'a mut bool,
}

impl<'de, V: Visitor<'de>> Visitor<'de> for KeyVisit<'_, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        self.v.expecting(f)
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<V::Value, E> {
        *self.cut = CUT_KEYS.contains(&value);
        self.v.visit_str(value)
    }

    fn visit_borrowed_str<E: de::Error>(self, value: &'de str) -> Result<V::Value, E> {
        *self.cut = CUT_KEYS.contains(&value);
        self.v.visit_borrowed_str(value)
    }

    fn visit_string<E: de::Error>(self, value: String) -> Result<V::Value, E> {
        *self.cut = CUT_KEYS.contains(&value.as_str());
        self.v.visit_string(value)
    }

    visit! {
        visit_bool(bool), visit_i8(i8), visit_i16(i16), visit_i32(i32), visit_i64(i64),
        visit_i128(i128), visit_u8(u8), visit_u16(u16), visit_u32(u32), visit_u64(u64),
        visit_u128(u128), visit_f32(f32), visit_f64(f64), visit_char(char),
        visit_bytes(&[u8]), visit_borrowed_bytes(&'de [u8]), visit_byte_buf(Vec<u8>),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::StatefulSetSpec;
    use k8s_openapi::api::core::v1::PodSpec;
    use serde::Deserialize;
    use serde_json::json;

    #[derive(Deserialize)]
    #[serde(bound = "T: de::DeserializeOwned")]
    struct Holder<T> {
        #[serde(default = "none", deserialize_with = "option")]
        spec: Option<T>,
    }

    fn none<T>() -> Option<T> {
        None
    }

    fn pod_spec(volumes: usize, containers: usize) -> serde_json::Value {
        let volumes: Vec<_> = (0..volumes)
            .map(|i| {
                json!({"name": format!("v{i}"), "ephemeral": {"volumeClaimTemplate": {"spec": {
                "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}}})
            })
            .collect();
        let containers: Vec<_> = (0..containers)
            .map(|i| {
                json!({"name": format!("c{i}"), "image": "x",
                "volumeMounts": [{"name": "v0", "mountPath": "/a"}]})
            })
            .collect();
        json!({"nodeName": "n1", "volumes": volumes, "containers": containers,
            "nodeSelector": {"volumes": "x"}, "tolerations": [{"key": "volumes"}]})
    }

    fn decode<T: de::DeserializeOwned>(spec: &serde_json::Value) -> Option<T> {
        let text = serde_json::to_vec(&json!({"spec": spec})).unwrap();
        serde_json::from_slice::<Holder<T>>(&text).unwrap().spec
    }

    /// Up to KEEP elements the decoding equals k8s-openapi's own; past it, the lists of the cut
    /// keys keep their first KEEP elements and everything else is decoded in full.
    #[test]
    fn long_lists_keep_their_first_elements_and_the_rest_decodes_as_before() {
        for n in [0, 1, KEEP - 1, KEEP] {
            let spec = pod_spec(n, n.min(3));
            let full: PodSpec = serde_json::from_value(spec.clone()).unwrap();
            assert_eq!(decode::<PodSpec>(&spec), Some(full), "{n}");
        }
        let spec = pod_spec(KEEP + 5, KEEP + 2);
        let cut: PodSpec = decode(&spec).unwrap();
        let mut full: PodSpec = serde_json::from_value(spec).unwrap();
        assert_eq!(cut.volumes.as_ref().unwrap().len(), KEEP);
        assert_eq!(cut.containers.len(), KEEP);
        full.volumes.as_mut().unwrap().truncate(KEEP);
        full.containers.truncate(KEEP);
        assert_eq!(cut, full);
        // A map key named like a cut key is no list and is kept whole.
        assert_eq!(cut.node_selector.unwrap()["volumes"], "x");
    }

    #[test]
    fn claim_templates_are_cut_and_nested_pod_volumes_too() {
        let templates: Vec<_> = (0..KEEP + 3)
            .map(|i| json!({"metadata": {"name": format!("t{i}")}}))
            .collect();
        let spec = json!({"selector": {}, "serviceName": "s", "volumeClaimTemplates": templates,
            "template": {"spec": pod_spec(KEEP + 1, 1)}});
        let cut: StatefulSetSpec = decode(&spec).unwrap();
        assert_eq!(cut.volume_claim_templates.unwrap().len(), KEEP);
        assert_eq!(
            cut.template.spec.unwrap().volumes.unwrap().len(),
            KEEP,
            "a pod template's volumes are cut as well"
        );
    }

    #[test]
    fn malformed_input_past_the_cut_is_still_an_error() {
        let text = format!(
            r#"{{"spec": {{"containers": [], "volumes": [{}, 1, ]}}}}"#,
            vec![r#"{"name": "v"}"#; KEEP].join(",")
        );
        assert!(serde_json::from_str::<Holder<PodSpec>>(&text).is_err());
        let absent: Holder<PodSpec> = serde_json::from_str("{}").unwrap();
        assert!(absent.spec.is_none());
        let null: Holder<PodSpec> = serde_json::from_str(r#"{"spec": null}"#).unwrap();
        assert!(null.spec.is_none());
    }
}
