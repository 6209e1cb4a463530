//! Reading the values of script replies: integers, strings, status letters.

use ::redis::Value;

use super::record;
use crate::error::{Error, Result};

pub(super) fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

pub(super) fn int(v: &Value) -> Result<i64> {
    match v {
        Value::Int(i) => Ok(*i),
        Value::BulkString(b) => std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| Error::Backend("expected an integer".into())),
        other => Err(Error::Backend(format!("expected an integer, got {other:?}"))),
    }
}

pub(super) fn bytes(v: &Value) -> Result<&[u8]> {
    match v {
        Value::BulkString(b) => Ok(b),
        Value::SimpleString(s) => Ok(s.as_bytes()),
        other => Err(Error::Backend(format!("expected a string, got {other:?}"))),
    }
}

pub(super) fn text(v: &Value) -> Result<&str> {
    std::str::from_utf8(bytes(v)?).map_err(|_| Error::Backend("reply is not UTF-8".into()))
}

pub(super) fn status_letter(v: Option<&Value>) -> crate::job::JobStatus {
    v.and_then(|v| bytes(v).ok())
        .and_then(|b| b.first().copied())
        .and_then(record::status_from_letter)
        .unwrap_or(crate::job::JobStatus::Pending)
}
