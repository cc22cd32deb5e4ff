//! A file operation's failure as the user sees it: a specific code and a message naming the path.

use tether_protocol::api::{error_answer, Answer, ErrorCode};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub code: ErrorCode,
    pub message: String,
}

impl Failure {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Failure {
        Failure { code, message: message.into() }
    }

    pub fn answer(self) -> Answer {
        error_answer(self.code, self.message)
    }
}

/// An I/O error on `path`, with the code that says what went wrong.
pub fn io_failure(path: &str, error: &std::io::Error) -> Failure {
    use std::io::ErrorKind;
    let (code, what) = match (error.kind(), error.raw_os_error()) {
        (ErrorKind::NotFound, _) => (ErrorCode::NotFound, "no such file or directory".to_owned()),
        (ErrorKind::PermissionDenied, _) => (ErrorCode::PermissionDenied, "permission denied".to_owned()),
        (ErrorKind::AlreadyExists, _) => (ErrorCode::Exists, "already exists".to_owned()),
        (_, Some(libc::ENOTDIR)) => (ErrorCode::NotADirectory, "not a directory".to_owned()),
        (_, Some(libc::EISDIR)) => (ErrorCode::IsADirectory, "is a directory".to_owned()),
        (_, Some(libc::ENOSPC | libc::EDQUOT)) => (ErrorCode::NoSpace, "no space left on the device".to_owned()),
        (_, Some(libc::ENOTEMPTY)) => (ErrorCode::Exists, "directory not empty".to_owned()),
        (_, Some(libc::ELOOP)) => (ErrorCode::OutsideRoot, "a symlink appeared on the way".to_owned()),
        _ => (ErrorCode::Internal, error.to_string()),
    };
    Failure::new(code, format!("{path}: {what}"))
}
