//! Why a run could not be made: bad flags, or a target that could not be set up. Failed
//! requests during the measurement are not errors of this kind: they are counted and
//! reported (`report.rs`).

/// A run that cannot go ahead.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The flags ask for something impossible; the message says which flag and why.
    #[error("{0}")]
    Usage(String),
    /// A request made before measuring (discovery, registration, the first token) failed.
    #[error("{step}: {why}")]
    Setup {
        /// What was being set up.
        step: String,
        /// What went wrong, with what the server said.
        why: String,
    },
}

impl BenchError {
    /// A failed setup step.
    pub fn setup(step: impl Into<String>, why: impl std::fmt::Display) -> BenchError {
        BenchError::Setup {
            step: step.into(),
            why: why.to_string(),
        }
    }
}
