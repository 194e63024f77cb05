//! Config errors: each names where in the file it is and what is wrong.

use std::fmt;
use std::path::{Path, PathBuf};

/// One problem in a config file, at a path such as `routes[3].upstream`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Where inside the document (`services[0].instances[1].url`); empty for the whole file.
    pub path: String,
    /// What is wrong, in words an operator can act on.
    pub message: String,
}

impl ConfigError {
    /// Creates an error at `path` (dotted, with `[i]` indices).
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Every problem found in one config file.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigErrors {
    /// The file the errors are about.
    pub file: PathBuf,
    /// All errors, in document order.
    pub errors: Vec<ConfigError>,
}

impl ConfigErrors {
    /// Wraps a non-empty list of errors for `file`.
    pub fn new(file: &Path, errors: Vec<ConfigError>) -> Self {
        Self {
            file: file.to_path_buf(),
            errors,
        }
    }

    /// One error for `file`.
    pub fn single(file: &Path, error: ConfigError) -> Self {
        Self::new(file, vec![error])
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{}: {e}", self.file.display())?;
        }
        Ok(())
    }
}
