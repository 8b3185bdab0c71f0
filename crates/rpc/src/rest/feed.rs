//! `GET /v1/feed`: final readings and blocks as Server-Sent Events, resumable.
//!
//! Events come from the final blocks in the store, in chain order: for each block its
//! readings (those the filter takes) as `reading` events, then one `block` event. Each
//! event's `id` is its cursor: `H-I` for the reading at index `I` of block `H`, `H-b` for the
//! block. A client that reconnects with `Last-Event-ID` (browsers' `EventSource` sends it by
//! itself) or `?from=CURSOR` gets what follows that event, nothing lost and nothing repeated,
//! also after a restart of the node (the store is the source). Without a cursor the feed
//! starts after the head (`?from_height=N` starts at block N).
//!
//! A slow consumer never slows the node: events go to the connection through a small
//! buffer; a consumer that leaves it full for [`STALL`] is cut off (it resumes from its last
//! id). Catching up from far behind reads the store at the consumer's pace.

use std::{convert::Infallible, sync::Arc, time::Duration};

use alloy_primitives::Address;
use axum::{
    extract::State,
    http::HeaderMap,
    response::sse::{Event, KeepAlive, Sse},
};
use futures::Stream;
use iotchain_api::ChainQuery;
use iotchain_block::BlockItem;
use iotchain_reading::DeviceAddress;
use serde::{Deserialize, Serialize};
use utoipa::{
    IntoParams, PartialSchema, ToSchema,
    openapi::{
        RefOr,
        schema::{ObjectBuilder, OneOfBuilder, Schema, Type},
    },
};

use super::{
    cbor_json::data_json,
    openapi::{Address20, ErrorBody, Hash32, ReadingData},
};
use crate::{ApiError, NodeApi, Shared, extract::Query};

/// Events buffered for one connection.
const BUFFER: usize = 256;
/// How long a consumer may leave the buffer full before it is cut off.
pub(crate) const STALL: Duration = Duration::from_secs(10);

/// Query of `GET /v1/feed`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct FeedQuery {
    /// Only this device's readings (20 bytes of 0x-hex).
    #[param(pattern = "^(0x)?[0-9a-fA-F]{40}$")]
    device: Option<String>,
    /// Only readings of this stream.
    stream: Option<String>,
    /// Only readings of this owner's devices (the owner of the device now).
    #[param(pattern = "^(0x)?[0-9a-fA-F]{40}$")]
    owner: Option<String>,
    /// Resume after this event id, `HEIGHT-INDEX` or `HEIGHT-b` (as `Last-Event-ID`, which
    /// wins when both are given).
    #[param(pattern = "^[0-9]+-([0-9]+|b)$")]
    from: Option<String>,
    /// Start at this block (when no cursor is given; default: the block after the head).
    from_height: Option<u64>,
    /// `false`: no `block` events.
    blocks: Option<bool>,
    /// `false`: no `reading` events (only blocks: what a chain overview follows).
    readings: Option<bool>,
}

/// The `data` of a `reading` event: a final reading the filter takes.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct FeedReadingJson {
    /// The reading id.
    #[schema(value_type = Hash32)]
    id: alloy_primitives::B256,
    /// The device.
    #[schema(value_type = Address20)]
    device: String,
    /// The device's `seq`.
    seq: u64,
    /// The device's time, ms.
    ts: u64,
    /// The stream.
    stream: String,
    /// The block's height.
    height: u64,
    /// Its position among the block's readings.
    index: u64,
    /// The block's time, ms.
    block_time_ms: u64,
    /// The reading's data as JSON.
    #[schema(value_type = ReadingData)]
    data: Option<serde_json::Value>,
}

/// The `data` of a `block` event: a final block, after its readings' events.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct FeedBlockJson {
    /// Its height.
    height: u64,
    /// Its header hash.
    #[schema(value_type = Hash32)]
    hash: alloy_primitives::B256,
    /// Its time, ms.
    time_ms: u64,
    /// Readings in it.
    readings: u64,
    /// Transactions (owner and Ethereum) in it.
    transactions: u64,
}

/// One event of the feed as an SSE client parses it (`event`, `id`, `data`); `data` is the
/// JSON of a [`FeedReadingJson`] or a [`FeedBlockJson`].
pub(super) struct FeedEvent;

/// One kind of event: its name, its id's form, what its data is.
fn event_schema(name: &str, id_pattern: &str, data: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .property(
            "event",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some([name])),
        )
        .property(
            "id",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(id_pattern))
                .description(Some(
                    "The event's cursor: send it back as `Last-Event-ID` or `from`",
                )),
        )
        .property(
            "data",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .content_media_type("application/json")
                .description(Some(data)),
        )
        .required("event")
        .required("id")
        .required("data")
}

impl PartialSchema for FeedEvent {
    fn schema() -> RefOr<Schema> {
        OneOfBuilder::new()
            .description(Some(
                "Server-Sent Events in chain order: for each final block, its readings the \
                 filter takes, then the block. Comments (`:`) keep an idle connection alive.",
            ))
            .item(event_schema(
                "reading",
                "^[0-9]+-[0-9]+$",
                "A `FeedReadingJson`, as JSON",
            ))
            .item(event_schema(
                "block",
                "^[0-9]+-b$",
                "A `FeedBlockJson`, as JSON",
            ))
            .into()
    }
}

impl ToSchema for FeedEvent {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((FeedReadingJson::name().into(), FeedReadingJson::schema()));
        FeedReadingJson::schemas(schemas);
        schemas.push((FeedBlockJson::name().into(), FeedBlockJson::schema()));
        FeedBlockJson::schemas(schemas);
    }
}

/// Where the feed goes on: from reading index `next_index` of block `height` (then that
/// block's event).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Position {
    height: u64,
    next_index: u64,
}

/// Parses an event id: `H-I` (the reading at index `I` of block `H`) or `H-b`.
fn after_cursor(cursor: &str) -> Result<Position, ApiError> {
    let bad = || {
        ApiError::bad_request(
            "bad_cursor",
            format!("{cursor:?} is not a feed event id (HEIGHT-INDEX or HEIGHT-b)"),
        )
    };
    let (h, rest) = cursor.split_once('-').ok_or_else(bad)?;
    let height: u64 = h.parse().map_err(|_| bad())?;
    if rest == "b" {
        return Ok(Position {
            height: height.checked_add(1).ok_or_else(bad)?,
            next_index: 0,
        });
    }
    let index: u64 = rest.parse().map_err(|_| bad())?;
    Ok(Position {
        height,
        next_index: index.checked_add(1).ok_or_else(bad)?,
    })
}

struct Filter {
    device: Option<DeviceAddress>,
    stream: Option<String>,
    owner: Option<Address>,
    blocks: bool,
    readings: bool,
}

fn address(s: &str, what: &str) -> Result<[u8; 20], ApiError> {
    s.parse::<Address>().map(|a| a.0.0).map_err(|_| {
        ApiError::bad_request(
            "bad_address",
            format!("{what} must be a 20-byte 0x-hex address, got {s:?}"),
        )
    })
}

#[utoipa::path(
    get,
    path = "/v1/feed",
    tag = "data",
    params(
        FeedQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event id \
         (what `EventSource` sends by itself on a reconnection)", pattern = "^[0-9]+-([0-9]+|b)$"),
    ),
    responses(
        (status = 200, description = "The feed: never ends while the node runs",
         content_type = "text/event-stream", body = FeedEvent),
        (status = 400, description = "`bad_cursor`, `bad_address`, `bad_query`", body = ErrorBody),
    ),
)]
pub(super) async fn feed<N: NodeApi>(
    State(shared): State<Arc<Shared<N>>>,
    headers: HeaderMap,
    Query(q): Query<FeedQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let filter = Filter {
        device: q
            .device
            .as_deref()
            .map(|d| address(d, "device"))
            .transpose()?
            .map(DeviceAddress),
        stream: q.stream,
        owner: q
            .owner
            .as_deref()
            .map(|o| address(o, "owner"))
            .transpose()?
            .map(Address::from),
        blocks: q.blocks.unwrap_or(true),
        readings: q.readings.unwrap_or(true),
    };
    let last_id = headers
        .get("last-event-id")
        .map(|v| v.to_str().unwrap_or("?").to_string());
    let node = shared.node.clone();
    let start = match last_id.or(q.from) {
        Some(c) => after_cursor(&c)?,
        None => Position {
            height: q.from_height.unwrap_or(node.head().height + 1).max(1),
            next_index: 0,
        },
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Event>(BUFFER);
    tokio::spawn(produce(node, filter, start, tx));
    let stream =
        futures::stream::unfold(
            rx,
            |mut rx| async move { rx.recv().await.map(|e| (Ok(e), rx)) },
        );
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// Sends the events from `pos` on, block by block as they become final, until the consumer
/// goes away or stalls.
async fn produce<N: NodeApi>(
    node: N,
    filter: Filter,
    mut pos: Position,
    tx: tokio::sync::mpsc::Sender<Event>,
) {
    let mut head = node.subscribe_head();
    loop {
        if head.borrow().height < pos.height {
            tokio::select! {
                changed = head.changed() => if changed.is_err() { return },
                () = tx.closed() => return,
            }
            continue;
        }
        let n = node.clone();
        let height = pos.height;
        let events = match tokio::task::spawn_blocking(move || block_events(&n, height)).await {
            Ok(Ok(e)) => e,
            Ok(Err(e)) => {
                tracing::warn!(height, error = %e, "the feed cannot read a final block; stopping it");
                return;
            }
            Err(_) => return,
        };
        for ev in events {
            let keep = match &ev {
                FeedItem::Reading { index, .. } => {
                    filter.readings && *index >= pos.next_index && ev.passes(&filter, &node)
                }
                FeedItem::Block { .. } => filter.blocks,
            };
            if !keep {
                continue;
            }
            match tokio::time::timeout(STALL, tx.send(ev.event())).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return,
                Err(_) => {
                    tracing::info!(
                        height,
                        "a feed consumer stalled; cut off (it resumes from its last event id)"
                    );
                    return;
                }
            }
        }
        pos = Position {
            height: pos.height + 1,
            next_index: 0,
        };
    }
}

/// One event of the feed, before filtering.
enum FeedItem {
    Reading {
        index: u64,
        device: DeviceAddress,
        stream: String,
        body: FeedReadingJson,
        height: u64,
    },
    Block {
        height: u64,
        body: FeedBlockJson,
    },
}

impl FeedItem {
    fn passes<N: ChainQuery>(&self, f: &Filter, node: &N) -> bool {
        let Self::Reading { device, stream, .. } = self else {
            return true;
        };
        f.device.is_none_or(|d| d == *device)
            && f.stream.as_deref().is_none_or(|s| s == stream)
            && f.owner
                .is_none_or(|o| node.device(device).is_some_and(|r| r.owner == o))
    }

    fn event(&self) -> Event {
        match self {
            Self::Reading {
                index,
                height,
                body,
                ..
            } => Event::default()
                .event("reading")
                .id(format!("{height}-{index}"))
                .data(serde_json::to_string(body).expect("an event serializes")),
            Self::Block { height, body } => Event::default()
                .event("block")
                .id(format!("{height}-b"))
                .data(serde_json::to_string(body).expect("an event serializes")),
        }
    }
}

/// The events of the final block at `height`: its readings, then the block.
fn block_events<Q: ChainQuery>(
    chain: &Q,
    height: u64,
) -> Result<Vec<FeedItem>, iotchain_api::QueryError> {
    let block = chain.block(height)?.ok_or_else(|| {
        iotchain_api::QueryError::Storage(format!("final block {height} missing"))
    })?;
    let header = &block.header;
    let hash = header.hash();
    let mut out = Vec::with_capacity(header.reading_count as usize + 1);
    let mut index = 0u64;
    let mut transactions = 0u64;
    for item in &block.items {
        let BlockItem::Reading(message) = item else {
            transactions += 1;
            continue;
        };
        let i = index;
        index += 1;
        let Ok(r) = iotchain_reading::decode(message) else {
            continue;
        };
        out.push(FeedItem::Reading {
            index: i,
            device: r.device,
            stream: r.stream.to_string(),
            height,
            body: FeedReadingJson {
                id: alloy_primitives::B256::from(r.id()),
                device: r.device.to_string(),
                seq: r.seq,
                ts: r.ts,
                stream: r.stream.to_string(),
                height,
                index: i,
                block_time_ms: header.timestamp_ms,
                data: data_json(r.data),
            },
        });
    }
    out.push(FeedItem::Block {
        height,
        body: FeedBlockJson {
            height,
            hash,
            time_ms: header.timestamp_ms,
            readings: header.reading_count,
            transactions,
        },
    });
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_resume_after_their_event_and_bad_ones_are_named() {
        assert_eq!(
            after_cursor("7-3").unwrap(),
            Position {
                height: 7,
                next_index: 4
            }
        );
        assert_eq!(
            after_cursor("7-b").unwrap(),
            Position {
                height: 8,
                next_index: 0
            }
        );
        for bad in [
            "",
            "7",
            "x-1",
            "7-",
            "7-c",
            "-1-2",
            "18446744073709551615-b",
            "1-18446744073709551615",
        ] {
            let e = after_cursor(bad).unwrap_err();
            assert_eq!(e.code, "bad_cursor", "{bad}");
        }
    }
}
