//! A device's data read back: its streams, and its final readings by range, page by page,
//! from the stream index (a page costs what it holds, not what the chain holds).

use std::sync::Arc;

use alloy_primitives::B256;
use axum::{Json, extract::State};
use iotchain_reading::DeviceAddress;
use iotchain_storage::{StreamCursor, StreamEntry, StreamInfo, StreamRange};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{cbor_json::data_json, off_thread, parse_device};
use crate::{
    ApiError, NodeApi, Shared,
    extract::{Path, Query},
    hex0x,
};

/// Readings in a page by default.
const DEFAULT_LIMIT: usize = 100;
/// Most readings in a page.
pub(crate) const MAX_LIMIT: usize = 1000;

/// A reading of the index as JSON (`raw`: with its signed message).
fn reading_json(stream: &str, e: &StreamEntry, raw: bool) -> Value {
    let decoded = iotchain_reading::decode(&e.message).ok();
    let mut v = json!({
        "id": B256::from(iotchain_reading::reading_id(&e.message)),
        "seq": e.seq,
        "ts": e.ts,
        "stream": stream,
        "height": e.height,
        "index": e.index,
        "block_time_ms": e.block_time_ms,
        "data": decoded.as_ref().and_then(|r| data_json(r.data)),
    });
    if raw {
        v["message"] = json!(hex0x(&e.message));
    }
    v
}

pub(super) async fn get_streams<N: NodeApi>(
    State(shared): State<Arc<Shared<N>>>,
    Path(address): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let device = parse_device(&address)?;
    let node = shared.node.clone();
    let out = off_thread(move || {
        let streams = node.streams(&device)?;
        let mut out = Vec::with_capacity(streams.len());
        for s in &streams {
            let from = match s.latest {
                0 => StreamCursor::Start,
                p => StreamCursor::Position(p - 1),
            };
            let latest = node
                .stream_page(&device, &s.stream, &StreamRange::default(), from, false, 1)?
                .and_then(|(_, page, _)| {
                    page.into_iter().next().filter(|e| e.position == s.latest)
                });
            out.push(json!({
                "stream": s.stream,
                "count": s.count,
                "first_seq": s.first_seq,
                "last_seq": s.last_seq,
                "first_ts": s.first_ts,
                "last_ts": s.last_ts,
                "latest": latest.map(|e| reading_json(&s.stream, &e, false)),
            }));
        }
        Ok(out)
    })
    .await?;
    Ok(Json(json!({"streams": out})))
}

/// Query of `GET /v1/devices/{address}/readings`.
#[derive(Debug, Deserialize)]
pub(super) struct ReadingsQuery {
    stream: Option<String>,
    order: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
    from_seq: Option<u64>,
    to_seq: Option<u64>,
    from_ts: Option<u64>,
    to_ts: Option<u64>,
    from_time: Option<u64>,
    to_time: Option<u64>,
    /// `true`: each reading also carries its signed message (`message`, 0x-hex).
    raw: Option<bool>,
}

impl ReadingsQuery {
    fn range(&self) -> Result<StreamRange, ApiError> {
        let pair = |from: Option<u64>,
                    to: Option<u64>,
                    what: &str|
         -> Result<Option<(u64, u64)>, ApiError> {
            match (from, to) {
                (None, None) => Ok(None),
                (f, t) => {
                    let (f, t) = (f.unwrap_or(0), t.unwrap_or(u64::MAX));
                    if f > t {
                        return Err(ApiError::bad_request(
                            "bad_range",
                            format!("from_{what} {f} is after to_{what} {t}"),
                        ));
                    }
                    Ok(Some((f, t)))
                }
            }
        };
        Ok(StreamRange {
            seq: pair(self.from_seq, self.to_seq, "seq")?,
            ts: pair(self.from_ts, self.to_ts, "ts")?,
            block_time: pair(self.from_time, self.to_time, "time")?,
        })
    }

    /// What a cursor is bound to: the device, the stream (or all), the ranges and the order.
    fn fingerprint(&self, device: &DeviceAddress, descending: bool) -> [u8; 8] {
        let text = format!(
            "{device}|{:?}|{descending}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}",
            self.stream,
            self.from_seq,
            self.to_seq,
            self.from_ts,
            self.to_ts,
            self.from_time,
            self.to_time
        );
        let h = alloy_primitives::keccak256(text.as_bytes());
        h[..8].try_into().expect("8 bytes")
    }
}

/// An opaque cursor: `c1` + hex of (fingerprint ‖ position or location ‖ check), where the
/// check is the next 4 bytes of keccak256 of the rest, so that a changed cursor is refused.
fn encode_cursor(fp: [u8; 8], at: StreamCursor) -> String {
    let mut b = fp.to_vec();
    match at {
        StreamCursor::Position(p) => {
            b.push(0);
            b.extend_from_slice(&p.to_be_bytes());
        }
        StreamCursor::Location(h, i) => {
            b.push(1);
            b.extend_from_slice(&h.to_be_bytes());
            b.extend_from_slice(&i.to_be_bytes());
        }
        StreamCursor::Start => b.push(2),
    }
    let check = alloy_primitives::keccak256(&b);
    b.extend_from_slice(&check[..4]);
    format!("c1{}", hex::encode(b))
}

fn decode_cursor(s: &str, fp: [u8; 8]) -> Result<StreamCursor, ApiError> {
    let bad = |why: &str| ApiError::bad_request("bad_cursor", format!("cursor {s:?} {why}"));
    let bytes = s
        .strip_prefix("c1")
        .and_then(|h| hex::decode(h).ok())
        .ok_or_else(|| bad("is not one this node gave"))?;
    if bytes.len() < 13 {
        return Err(bad("is not one this node gave"));
    }
    let (body, check) = bytes.split_at(bytes.len() - 4);
    if alloy_primitives::keccak256(body)[..4] != *check {
        return Err(bad("was changed"));
    }
    if body[..8] != fp {
        return Err(bad(
            "belongs to another query (device, stream, ranges or order)",
        ));
    }
    match (body[8], body.len()) {
        (0, 17) => Ok(StreamCursor::Position(u64::from_be_bytes(
            body[9..17].try_into().expect("8 bytes"),
        ))),
        (1, 21) => Ok(StreamCursor::Location(
            u64::from_be_bytes(body[9..17].try_into().expect("8 bytes")),
            u32::from_be_bytes(body[17..21].try_into().expect("4 bytes")),
        )),
        _ => Err(bad("is not one this node gave")),
    }
}

pub(super) async fn get_readings<N: NodeApi>(
    State(shared): State<Arc<Shared<N>>>,
    Path(address): Path<String>,
    Query(q): Query<ReadingsQuery>,
) -> Result<Json<Value>, ApiError> {
    let device = parse_device(&address)?;
    let descending = match q.order.as_deref() {
        None | Some("asc") => false,
        Some("desc") => true,
        Some(other) => {
            return Err(ApiError::bad_request(
                "bad_order",
                format!("order is asc or desc, not {other:?}"),
            ));
        }
    };
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(ApiError::bad_request(
            "bad_limit",
            format!("limit is 1 to {MAX_LIMIT}, not {limit}"),
        ));
    }
    let range = q.range()?;
    let fp = q.fingerprint(&device, descending);
    let after = match &q.cursor {
        Some(c) => decode_cursor(c, fp)?,
        None => StreamCursor::Start,
    };
    let raw = q.raw.unwrap_or(false);
    let node = shared.node.clone();
    let stream = q.stream.clone();
    off_thread(move || {
        let (readings, next) = match &stream {
            Some(s) => {
                if matches!(after, StreamCursor::Location(..)) {
                    return Err(ApiError::bad_request(
                        "bad_cursor",
                        "cursor belongs to another query",
                    ));
                }
                match node.stream_page(&device, s, &range, after, descending, limit)? {
                    None => (Vec::new(), None),
                    Some((_, page, more)) => {
                        let next = more
                            .then(|| {
                                page.last()
                                    .map(|e| encode_cursor(fp, StreamCursor::Position(e.position)))
                            })
                            .flatten();
                        (page.iter().map(|e| reading_json(s, e, raw)).collect(), next)
                    }
                }
            }
            None => {
                if matches!(after, StreamCursor::Position(_)) {
                    return Err(ApiError::bad_request(
                        "bad_cursor",
                        "cursor belongs to another query",
                    ));
                }
                let (page, more) =
                    all_streams_page(&node, &device, &range, after, descending, limit)?;
                let next = more
                    .then(|| {
                        page.last().map(|(_, e)| {
                            encode_cursor(fp, StreamCursor::Location(e.height, e.index))
                        })
                    })
                    .flatten();
                (
                    page.iter()
                        .map(|(s, e)| reading_json(&s.stream, e, raw))
                        .collect::<Vec<_>>(),
                    next,
                )
            }
        };
        Ok(Json(json!({"readings": readings, "next_cursor": next})))
    })
    .await
}

/// A page over every stream of the device, in commit order: each stream's page after the
/// cursor, merged.
fn all_streams_page<N: NodeApi>(
    node: &N,
    device: &DeviceAddress,
    range: &StreamRange,
    after: StreamCursor,
    descending: bool,
    limit: usize,
) -> Result<(Vec<(StreamInfo, StreamEntry)>, bool), ApiError> {
    let mut all = Vec::new();
    let mut more = false;
    for s in node.streams(device)? {
        if let Some((info, page, m)) =
            node.stream_page(device, &s.stream, range, after, descending, limit)?
        {
            more |= m;
            all.extend(page.into_iter().map(|e| (info.clone(), e)));
        }
    }
    all.sort_by_key(|(_, e)| (e.height, e.index));
    if descending {
        all.reverse();
    }
    more |= all.len() > limit;
    all.truncate(limit);
    Ok((all, more))
}

/// Query of `GET /v1/devices/{address}/streams/{stream}/series`.
#[derive(Debug, Deserialize)]
pub(super) struct SeriesQuery {
    /// Bucket size: `1m`, `5m`, `15m`, `1h`, `6h`, `1d`, `7d` (or N followed by `m`, `h`, `d`).
    bucket: Option<String>,
    from_ts: Option<u64>,
    to_ts: Option<u64>,
    /// A numeric field of map data: keys (and array indexes) separated by `.`, e.g. `temp_mc`
    /// or `env.0.t`; without it the reading's data must itself be a number.
    path: Option<String>,
}

/// Most buckets in one answer (a year of minutes fits).
pub(crate) const MAX_BUCKETS: u64 = 1_100_000;
/// Most readings a `path` series reads (it decodes each one).
pub(crate) const MAX_PATH_READINGS: usize = 1_000_000;

fn bucket_ms(text: &str) -> Result<u64, ApiError> {
    let bad = || {
        ApiError::bad_request(
            "bad_bucket",
            format!(
                "bucket is a number of minutes, hours or days such as 1m, 15m, 1h, 1d, not {text:?}"
            ),
        )
    };
    let (n, unit) = text.split_at(text.len().saturating_sub(1));
    let n: u64 = n.parse().map_err(|_| bad())?;
    let unit_ms = match unit {
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(bad()),
    };
    if n == 0 || n > 366 * 24 * 60 {
        return Err(bad());
    }
    Ok(n * unit_ms)
}

/// The number at `path` in reading data as JSON.
fn number_at(data: &Value, path: &str) -> Option<f64> {
    let mut v = data;
    for key in path.split('.') {
        v = match v {
            Value::Object(o) => o.get(key)?,
            Value::Array(a) => a.get(key.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    v.as_f64()
}

pub(super) async fn get_series<N: NodeApi>(
    State(shared): State<Arc<Shared<N>>>,
    Path((address, stream)): Path<(String, String)>,
    Query(q): Query<SeriesQuery>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse as _;
    let device = parse_device(&address)?;
    let bucket = bucket_ms(q.bucket.as_deref().unwrap_or("1h"))?;
    let (from, to) = (q.from_ts.unwrap_or(0), q.to_ts.unwrap_or(u64::MAX));
    if from > to {
        return Err(ApiError::bad_request(
            "bad_range",
            format!("from_ts {from} is after to_ts {to}"),
        ));
    }
    let node = shared.node.clone();
    // Built and serialized off the async threads: a year of minute buckets is some 60 MB.
    let body = off_thread(move || {
        let buckets = match &q.path {
            None => {
                // The stream's own time span bounds the buckets there can be.
                let Some(info) = node
                    .streams(&device)?
                    .into_iter()
                    .find(|s| s.stream == stream)
                else {
                    return Ok(series_json(&[]));
                };
                let (lo, hi) = (from.max(info.first_ts), to.min(info.last_ts));
                if lo > hi {
                    return Ok(series_json(&[]));
                }
                if (hi - lo) / bucket > MAX_BUCKETS {
                    return Err(ApiError::bad_request(
                        "too_many_buckets",
                        format!(
                            "more than {MAX_BUCKETS} buckets: narrow the range or widen the bucket"
                        ),
                    ));
                }
                node.stream_series(&device, &stream, lo, hi, bucket)?
                    .unwrap_or_default()
            }
            Some(path) => path_series(&node, &device, &stream, path, from, to, bucket)?,
        };
        Ok(series_json(&buckets))
    })
    .await?;
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response())
}

/// A bucket as the API gives it.
#[derive(serde::Serialize)]
struct BucketJson {
    start_ms: u64,
    count: u64,
    min: f64,
    max: f64,
    mean: f64,
    first: f64,
    last: f64,
}

/// `{"buckets": [...]}`, serialized.
fn series_json(buckets: &[iotchain_storage::Bucket]) -> Vec<u8> {
    #[derive(serde::Serialize)]
    struct Answer {
        buckets: Vec<BucketJson>,
    }
    let buckets = buckets
        .iter()
        .map(|b| BucketJson {
            start_ms: b.start_ms,
            count: b.count,
            min: b.min,
            max: b.max,
            mean: b.sum / b.count as f64,
            first: b.first.1,
            last: b.last.1,
        })
        .collect();
    serde_json::to_vec(&Answer { buckets }).expect("buckets serialize")
}

/// Buckets of the number at `path` in each reading: the readings with device time in range,
/// read from the stream index and decoded (whole buckets, like the others).
fn path_series<N: NodeApi>(
    node: &N,
    device: &DeviceAddress,
    stream: &str,
    path: &str,
    from: u64,
    to: u64,
    bucket: u64,
) -> Result<Vec<iotchain_storage::Bucket>, ApiError> {
    let range = StreamRange {
        ts: Some((
            from / bucket * bucket,
            (to / bucket * bucket).saturating_add(bucket - 1),
        )),
        ..StreamRange::default()
    };
    let mut buckets: std::collections::BTreeMap<u64, iotchain_storage::Bucket> = Default::default();
    let (mut after, mut read) = (StreamCursor::Start, 0usize);
    while let Some((_, page, more)) =
        node.stream_page(device, stream, &range, after, false, MAX_LIMIT)?
    {
        read += page.len();
        if read > MAX_PATH_READINGS {
            return Err(ApiError::bad_request(
                "too_many_readings",
                format!(
                    "a path series reads at most {MAX_PATH_READINGS} readings: narrow the range"
                ),
            ));
        }
        for e in &page {
            let Some(v) = iotchain_reading::decode(&e.message)
                .ok()
                .and_then(|r| data_json(r.data))
                .and_then(|d| number_at(&d, path))
            else {
                continue;
            };
            let start = e.ts / bucket * bucket;
            let one = iotchain_storage::Bucket::of(start, e.ts, v);
            buckets
                .entry(start)
                .and_modify(|b| b.merge(&one))
                .or_insert(one);
        }
        match (more, page.last()) {
            (true, Some(last)) => after = StreamCursor::Position(last.position),
            _ => break,
        }
    }
    Ok(buckets.into_values().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_are_bound_to_their_query_and_refused_when_changed() {
        let fp = [1u8; 8];
        for at in [StreamCursor::Position(42), StreamCursor::Location(7, 3)] {
            let c = encode_cursor(fp, at);
            assert_eq!(decode_cursor(&c, fp).unwrap(), at);
            assert_eq!(decode_cursor(&c, [2; 8]).unwrap_err().code, "bad_cursor");
            // Any changed digit is refused.
            let mut chars: Vec<char> = c.chars().collect();
            let i = chars.len() - 10;
            chars[i] = if chars[i] == '0' { '1' } else { '0' };
            let changed: String = chars.into_iter().collect();
            assert!(
                decode_cursor(&changed, fp)
                    .unwrap_err()
                    .message
                    .contains("changed")
            );
        }
        for bad in [
            "",
            "c1",
            "c1zz",
            "x1abcdef",
            &format!("c1{}", "00".repeat(13)),
        ] {
            assert_eq!(
                decode_cursor(bad, fp).unwrap_err().code,
                "bad_cursor",
                "{bad}"
            );
        }
    }
}
