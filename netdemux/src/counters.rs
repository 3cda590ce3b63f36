//! Counters declared once. [`counters!`] turns one list — each counter's name, kind, doc line
//! and whether the text tables show it — into a plain struct of `u64`s (what reports and JSON
//! carry), an atomic mirror that one thread writes and others read, and the [`Field`] table from
//! which the text tables and the Prometheus families are derived. A counter added to the list
//! appears everywhere; there is no second list to forget.

/// How a value behaves over time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Only grows (Prometheus `counter`, named `..._total`).
    Counter,
    /// Goes up and down (Prometheus `gauge`).
    Gauge,
}

/// What a counter set says of one of its counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    /// The name in JSON and in the text tables.
    pub name: &'static str,
    /// The name's part in the Prometheus family (usually the same).
    pub metric: &'static str,
    /// Counter or gauge.
    pub kind: Kind,
    /// One line of help: the counter's doc comment.
    pub help: &'static str,
    /// Shown in the compact text table (`stats` without `--json`).
    pub in_table: bool,
}

impl Field {
    /// The doc line without its leading space.
    pub fn help(&self) -> &'static str {
        self.help.trim()
    }
}

/// A set of counters made by [`counters!`].
pub trait CounterSet: Copy + Default {
    /// Its counters, in declaration order.
    const FIELDS: &'static [Field];
    /// The value of counter `i` (an index into [`CounterSet::FIELDS`]).
    fn get(&self, i: usize) -> u64;
    /// Counter `i`, to set.
    fn get_mut(&mut self, i: usize) -> &mut u64;
    /// Every counter with its field.
    fn each(&self) -> impl Iterator<Item = (&'static Field, u64)> {
        Self::FIELDS
            .iter()
            .enumerate()
            .map(move |(i, f)| (f, self.get(i)))
    }
}

/// The atomic mirror of a counter set: written by one thread, read by any.
pub trait AtomicSet: Default {
    /// The plain set it mirrors.
    type Plain: CounterSet;
    /// Publishes `values` (relaxed stores).
    fn store(&self, values: &Self::Plain);
    /// Reads the last published values.
    fn load(&self) -> Self::Plain;
}

/// Declares a counter set:
///
/// ```ignore
/// counters! {
///     /// The counters of one queue.
///     pub struct QueueCounters / AtomicQueueCounters {
///         /// Frames received from the RX ring.
///         rx: counter [table],
///         /// TCP connections in the flow table.
///         open: gauge(open_connections),
///     }
/// }
/// ```
///
/// `counter` or `gauge` is the kind; a name in parentheses replaces the field's name in the
/// Prometheus family; `[table]` shows the counter in the compact text table.
#[macro_export]
macro_rules! counters {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident / $atomic:ident {
            $(
                $(#[doc = $doc:literal])+
                $field:ident : $kind:ident $(($metric:ident))? $([$flag:ident])?
            ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
        $vis struct $name {
            $(
                $(#[doc = $doc])+
                #[serde(default)]
                pub $field: u64,
            )*
        }

        impl $crate::counters::CounterSet for $name {
            const FIELDS: &'static [$crate::counters::Field] = &[
                $(
                    $crate::counters::Field {
                        name: stringify!($field),
                        metric: $crate::counters!(@metric $field $($metric)?),
                        kind: $crate::counters!(@kind $kind),
                        help: concat!($($doc),+),
                        in_table: $crate::counters!(@table $($flag)?),
                    },
                )*
            ];

            fn get(&self, i: usize) -> u64 {
                [$(self.$field),*][i]
            }

            fn get_mut(&mut self, i: usize) -> &mut u64 {
                let all: [&mut u64; Self::FIELDS.len()] = [$(&mut self.$field),*];
                all.into_iter().nth(i).expect("a counter index below FIELDS.len()")
            }
        }

        impl $name {
            /// Adds `other`, counter by counter.
            pub fn add(&mut self, other: &$name) {
                $( self.$field += other.$field; )*
            }
        }

        #[doc = concat!("The atomic mirror of [`", stringify!($name), "`].")]
        #[derive(Debug)]
        $vis struct $atomic {
            $(
                $(#[doc = $doc])+
                pub $field: std::sync::atomic::AtomicU64,
            )*
        }

        impl Default for $atomic {
            fn default() -> Self {
                $atomic { $( $field: std::sync::atomic::AtomicU64::new(0), )* }
            }
        }

        impl $crate::counters::AtomicSet for $atomic {
            type Plain = $name;

            fn store(&self, values: &$name) {
                $( self.$field.store(values.$field, std::sync::atomic::Ordering::Relaxed); )*
            }

            fn load(&self) -> $name {
                $name { $( $field: self.$field.load(std::sync::atomic::Ordering::Relaxed), )* }
            }
        }
    };
    (@metric $field:ident) => { stringify!($field) };
    (@metric $field:ident $metric:ident) => { stringify!($metric) };
    (@kind counter) => { $crate::counters::Kind::Counter };
    (@kind gauge) => { $crate::counters::Kind::Gauge };
    (@table) => { false };
    (@table table) => { true };
}

#[cfg(test)]
mod tests {
    use super::*;

    counters! {
        /// Two test counters.
        pub struct Pair / AtomicPair {
            /// Things seen.
            seen: counter [table],
            /// Things open now.
            open: gauge(open_things),
        }
    }

    #[test]
    fn one_declaration_gives_names_kinds_help_and_a_mirror() {
        let f = Pair::FIELDS;
        assert_eq!(f.len(), 2);
        assert_eq!(
            (f[0].name, f[0].metric, f[0].kind),
            ("seen", "seen", Kind::Counter)
        );
        assert_eq!(
            (f[1].name, f[1].metric, f[1].kind),
            ("open", "open_things", Kind::Gauge)
        );
        assert_eq!(f[0].help(), "Things seen.");
        assert!(f[0].in_table && !f[1].in_table);
        let p = Pair { seen: 3, open: 4 };
        assert_eq!(
            p.each().map(|(f, v)| (f.name, v)).collect::<Vec<_>>(),
            [("seen", 3), ("open", 4)]
        );
        let a = AtomicPair::default();
        a.store(&p);
        assert_eq!(a.load(), p);
        let mut q = p;
        *q.get_mut(1) += 1;
        assert_eq!(q.open, 5);
        q.open = 4;
        q.add(&p);
        assert_eq!(q, Pair { seen: 6, open: 8 });
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(json, r#"{"seen":3,"open":4}"#);
        assert_eq!(serde_json::from_str::<Pair>(&json).unwrap(), p);
    }
}
