//! Columns and statements: how stored values are read (an unknown status,
//! an invalid instance id or an out-of-range count is an error of its row,
//! as a wrong type is), and how independent statements are pipelined.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

use perdure_records::{GuestError, InboxBody, InboxMessage, InstanceId, RuntimeStatus};
use tokio_postgres::types::{FromSql, ToSql, Type};
use tokio_postgres::{Error, Row};

/// A statement parameter.
pub(crate) type Param<'a> = &'a (dyn ToSql + Sync);

/// Why a stored value cannot be read as what it should be.
fn bad_value(what: &str, value: &str) -> Box<dyn std::error::Error + Sync + Send> {
    format!("unexpected {what} {value:?} in the database").into()
}

/// A stored runtime status; an unknown one is an error of its row.
pub(crate) struct Status(pub(crate) RuntimeStatus);

impl<'a> FromSql<'a> for Status {
    fn from_sql(
        ty: &Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        let text = <&str as FromSql>::from_sql(ty, raw)?;
        RuntimeStatus::parse(text)
            .map(Self)
            .ok_or_else(|| bad_value("status", text))
    }

    fn accepts(ty: &Type) -> bool {
        <&str as FromSql>::accepts(ty)
    }
}

/// A stored instance id; an invalid one is an error of its row.
pub(crate) struct Id(pub(crate) InstanceId);

impl<'a> FromSql<'a> for Id {
    fn from_sql(
        ty: &Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        let text = <&str as FromSql>::from_sql(ty, raw)?;
        InstanceId::parse(text)
            .map(Self)
            .map_err(|_| bad_value("instance id", text))
    }

    fn accepts(ty: &Type) -> bool {
        <&str as FromSql>::accepts(ty)
    }
}

/// A stored BIGINT that must fit a `u32` (attempts and failures); one that
/// does not is an error of its row.
pub(crate) struct U32(pub(crate) u32);

impl<'a> FromSql<'a> for U32 {
    fn from_sql(
        ty: &Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        let value = i64::from_sql(ty, raw)?;
        u32::try_from(value)
            .map(Self)
            .map_err(|_| bad_value("count", &value.to_string()))
    }

    fn accepts(ty: &Type) -> bool {
        <i64 as FromSql>::accepts(ty)
    }
}

/// The kind of a stored inbox row.
enum InboxKind {
    Task,
    Event,
}

impl<'a> FromSql<'a> for InboxKind {
    fn from_sql(
        ty: &Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        match <&str as FromSql>::from_sql(ty, raw)? {
            "task" => Ok(Self::Task),
            "event" => Ok(Self::Event),
            other => Err(bad_value("inbox kind", other)),
        }
    }

    fn accepts(ty: &Type) -> bool {
        <&str as FromSql>::accepts(ty)
    }
}

/// A count or limit as a BIGINT parameter; `usize::MAX` (no limit) stays
/// positive, as PostgreSQL refuses a negative limit.
pub(crate) fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Runs `futures` concurrently, so that tokio-postgres sends their
/// statements in one pipeline, in the order given (the order the server
/// runs them), and returns their outputs in that order. The first error
/// (the earliest statement's: later ones fail only because it aborted the
/// transaction) ends it.
pub(crate) async fn pipeline<T, F>(futures: impl IntoIterator<Item = F>) -> Result<Vec<T>, Error>
where
    F: Future<Output = Result<T, Error>> + Unpin,
{
    let mut futures: Vec<Option<F>> = futures.into_iter().map(Some).collect();
    let mut outputs: Vec<Option<T>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut waiting = false;
        for (slot, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            let Some(future) = slot else { continue };
            match Pin::new(future).poll(cx) {
                Poll::Ready(Ok(value)) => {
                    *output = Some(value);
                    *slot = None;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => waiting = true,
            }
        }
        if waiting {
            Poll::Pending
        } else {
            Poll::Ready(Ok(()))
        }
    })
    .await?;
    Ok(outputs.into_iter().flatten().collect())
}

pub(super) fn inbox_from_row(row: &Row) -> Result<InboxMessage, Error> {
    let ok: bool = row.try_get(4)?;
    let payload: String = row.try_get(5)?;
    let body = match row.try_get::<_, InboxKind>(1)? {
        // A task row without a task id fails to read (a NULL as i64).
        InboxKind::Task => InboxBody::TaskCompleted {
            task_id: row.try_get::<_, i64>(2)? as u64,
            outcome: if ok {
                Ok(payload)
            } else {
                Err(GuestError::from_stored(&payload))
            },
        },
        InboxKind::Event => InboxBody::Event {
            name: row.try_get::<_, Option<String>>(3)?.unwrap_or_default(),
            data: payload,
        },
    };
    Ok(InboxMessage {
        arrival: row.try_get(0)?,
        at_ms: row.try_get(6)?,
        body,
    })
}
