//! Mutation testing of the loom suite: the one way protocol code marks a place
//! where a deliberately broken build (`--cfg loom_mutant`) behaves differently.
//!
//! `mutant!("name" => broken, else correct)` evaluates to `correct` in every
//! normal build — the macro expands to that expression alone — and, under
//! `--cfg loom_mutant`, to `broken` when the `LOOM_MUTANT` environment variable
//! names this mutant. Each mutant weakens one ordering or skips one step, and
//! `loom-tests/run.sh` runs it against the model that must catch it; the list of
//! names is `MUTANTS` in `src/reclaim/loom.rs`.

/// `correct`, or `broken` in the loom build that tests mutant `name`; see the
/// [module docs](self).
macro_rules! mutant {
    ($name:literal => $broken:expr, else $correct:expr $(,)?) => {{
        #[cfg(loom_mutant)]
        let chosen = if $crate::reclaim::mutant($name) {
            $broken
        } else {
            $correct
        };
        #[cfg(not(loom_mutant))]
        let chosen = $correct;
        chosen
    }};
}

pub(crate) use mutant;
