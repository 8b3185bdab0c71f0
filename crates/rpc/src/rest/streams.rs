//! A device's data read back: its streams, and its final readings by range, page by page,
//! from the stream index (a page costs what it holds, not what the chain holds).

use std::sync::Arc;

use alloy_primitives::B256;
use axum::{Json, extract::State};
use iotchain_reading::DeviceAddress;
use iotchain_storage::{StreamCursor, StreamEntry, StreamInfo, StreamRange};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::{
    cbor_json::data_json,
    off_thread,
    openapi::{ErrorBody, Hash32, HexBytes, ReadingData},
    parse_device,
};
use crate::{
    ApiError, NodeApi, Shared,
    extract::{Path, Query},
    hex0x,
};

/// Readings in a page by default.
const DEFAULT_LIMIT: usize = 100;
/// Most readings in a page.
pub(crate) const MAX_LIMIT: usize = 1000;

/// A final reading of a device stream.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct ReadingJson {
    /// The reading id.
    #[schema(value_type = Hash32)]
    id: B256,
    /// The device's `seq`.
    seq: u64,
    /// The device's time, ms.
    ts: u64,
    /// The stream.
    stream: String,
    /// The block's height.
    height: u64,
    /// Its position among the block's readings.
    index: u32,
    /// The block's time, ms.
    block_time_ms: u64,
    /// The reading's data as JSON.
    #[schema(value_type = ReadingData)]
    data: Option<Value>,
    /// With `raw=true`: the signed COSE_Sign1 message, which hashes to `id`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<HexBytes>)]
    message: Option<String>,
}

/// A reading of the index as JSON (`raw`: with its signed message).
fn reading_json(stream: &str, e: &StreamEntry, raw: bool) -> ReadingJson {
    let decoded = iotchain_reading::decode(&e.message).ok();
    ReadingJson {
        id: B256::from(iotchain_reading::reading_id(&e.message)),
        seq: e.seq,
        ts: e.ts,
        stream: stream.to_string(),
        height: e.height,
        index: e.index,
        block_time_ms: e.block_time_ms,
        data: decoded.as_ref().and_then(|r| data_json(r.data)),
        message: raw.then(|| hex0x(&e.message)),
    }
}

/// A stream of a device: its figures and its latest reading.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct StreamJson {
    /// The stream name.
    stream: String,
    /// Final readings in it.
    count: u64,
    /// Lowest `seq`.
    first_seq: u64,
    /// Highest `seq`.
    last_seq: u64,
    /// Lowest device time.
    first_ts: u64,
    /// Highest device time.
    last_ts: u64,
    /// The final reading with the highest `seq`.
    latest: Option<ReadingJson>,
}

/// `GET /v1/devices/{address}/streams`.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct StreamsJson {
    /// The device's streams, by name.
    streams: Vec<StreamJson>,
}

#[utoipa::path(
    get,
    path = "/v1/devices/{address}/streams",
    tag = "data",
    params(("address" = String, Path, description = "The device address (20 bytes of 0x-hex)", pattern = "^(0x)?[0-9a-fA-F]{40}$")),
    responses(
        (status = 200, description = "The device's streams (none for an unknown device)", body = StreamsJson),
        (status = 400, description = "`bad_address`, `bad_path`", body = ErrorBody),
        (status = 503, description = "`storage_unavailable`: the store cannot be read", body = ErrorBody),
    ),
)]
pub(super) async fn get_streams<N: NodeApi>(
    State(shared): State<Arc<Shared<N>>>,
    Path(address): Path<String>,
) -> Result<Json<StreamsJson>, ApiError> {
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
            out.push(StreamJson {
                stream: s.stream.clone(),
                count: s.count,
                first_seq: s.first_seq,
                last_seq: s.last_seq,
                first_ts: s.first_ts,
                last_ts: s.last_ts,
                latest: latest.map(|e| reading_json(&s.stream, &e, false)),
            });
        }
        Ok(out)
    })
    .await?;
    Ok(Json(StreamsJson { streams: out }))
}

/// Query of `GET /v1/devices/{address}/readings`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct ReadingsQuery {
    /// Only this stream (without it: every stream of the device, merged in commit order).
    stream: Option<String>,
    /// `asc` (default: oldest first) or `desc`.
    #[param(pattern = "^(asc|desc)$")]
    order: Option<String>,
    /// Readings in a page: 1 to 1000 (default 100); with `proof=true`, the most readings the
    /// whole answer may hold, up to 10,000.
    #[param(minimum = 1, maximum = 10000)]
    limit: Option<usize>,
    /// The `next_cursor` of the previous page of the same query.
    #[param(pattern = "^c1([0-9a-f]{2})+$")]
    cursor: Option<String>,
    /// Lowest `seq` (inclusive).
    from_seq: Option<u64>,
    /// Highest `seq` (inclusive).
    to_seq: Option<u64>,
    /// Earliest device time, ms (inclusive).
    from_ts: Option<u64>,
    /// Latest device time, ms (inclusive).
    to_ts: Option<u64>,
    /// Earliest block time, ms (inclusive).
    from_time: Option<u64>,
    /// Latest block time, ms (inclusive).
    to_time: Option<u64>,
    /// `true`: each reading also carries its signed message (`message`, 0x-hex).
    raw: Option<bool>,
    /// `true`: the whole range (no pages; `limit` up to 10,000) with a complete-range proof
    /// (`range_proof`, docs/formats.md) that `iotchain verify` checks. Needs `stream` and at
    /// most one kind of range.
    proof: Option<bool>,
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

/// A page of a device's final readings.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct ReadingsPage {
    /// The readings, in commit order (`desc`: newest first).
    readings: Vec<ReadingJson>,
    /// Pass it back as `cursor` for the next page; `null` after the last.
    next_cursor: Option<String>,
    /// With `proof=true`: the proof that `readings` are exactly the stream's readings in the
    /// range (docs/formats.md, "Complete-range proofs").
    #[serde(skip_serializing_if = "Option::is_none")]
    range_proof: Option<iotchain_block::RangeProofJson>,
}

#[utoipa::path(
    get,
    path = "/v1/devices/{address}/readings",
    tag = "data",
    params(
        ("address" = String, Path, description = "The device address (20 bytes of 0x-hex)", pattern = "^(0x)?[0-9a-fA-F]{40}$"),
        ReadingsQuery,
    ),
    responses(
        (status = 200, description = "A page of final readings", body = ReadingsPage),
        (status = 400, description = "`bad_address`, `bad_order`, `bad_limit`, `bad_range` (a `from_` \
         after its `to_`, or two kinds of range with `proof=true`), `bad_cursor` (from another query, or changed, \
         or with `proof=true`), `bad_path`, `bad_query`, and with `proof=true`: `proof_too_large`, `untracked_stream`, \
         `no_accumulators`", body = ErrorBody),
        (status = 503, description = "`storage_unavailable`: the store cannot be read", body = ErrorBody),
    ),
)]
pub(super) async fn get_readings<N: NodeApi>(
    State(shared): State<Arc<Shared<N>>>,
    Path(address): Path<String>,
    Query(q): Query<ReadingsQuery>,
) -> Result<Json<ReadingsPage>, ApiError> {
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
    let proof = q.proof.unwrap_or(false);
    let max = if proof {
        super::range_proof::MAX_PROVEN_READINGS
    } else {
        MAX_LIMIT
    };
    let limit = super::page_limit(q.limit, DEFAULT_LIMIT, max)?;
    let range = q.range()?;
    if proof {
        if q.cursor.is_some() {
            return Err(ApiError::bad_request(
                "bad_cursor",
                "a proven answer is whole: it has no pages (narrow the range instead)",
            ));
        }
        let node = shared.node.clone();
        let stream = q.stream.clone();
        return off_thread(move || {
            let (entries, proof) = super::range_proof::proven(
                &node,
                &device,
                stream.as_deref(),
                &range,
                descending,
                limit,
            )?;
            Ok(Json(ReadingsPage {
                readings: entries
                    .iter()
                    .map(|e| reading_json(&proof.stream, e, true))
                    .collect(),
                next_cursor: None,
                range_proof: Some(proof),
            }))
        })
        .await;
    }
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
        Ok(Json(ReadingsPage {
            readings,
            next_cursor: next,
            range_proof: None,
        }))
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
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct SeriesQuery {
    /// Bucket size: `1m`, `5m`, `15m`, `1h`, `6h`, `1d`, `7d` (or N followed by `m`, `h`, `d`;
    /// default `1h`).
    #[param(pattern = "^[0-9]+[mhd]$")]
    bucket: Option<String>,
    /// Earliest device time, ms (inclusive; whole buckets).
    from_ts: Option<u64>,
    /// Latest device time, ms (inclusive; whole buckets).
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
    // The unit is the last character (which may take more than one byte: split there, not
    // at the last byte).
    let unit = text.chars().next_back().ok_or_else(bad)?;
    let n: u64 = text[..text.len() - unit.len_utf8()]
        .parse()
        .map_err(|_| bad())?;
    let unit_ms = match unit {
        'm' => 60_000,
        'h' => 3_600_000,
        'd' => 86_400_000,
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

#[utoipa::path(
    get,
    path = "/v1/devices/{address}/streams/{stream}/series",
    tag = "data",
    params(
        ("address" = String, Path, description = "The device address (20 bytes of 0x-hex)", pattern = "^(0x)?[0-9a-fA-F]{40}$"),
        ("stream" = String, Path, description = "The stream name"),
        SeriesQuery,
    ),
    responses(
        (status = 200, description = "The buckets that hold readings, oldest first", body = SeriesJson),
        (status = 400, description = "`bad_address`, `bad_bucket`, `bad_range`, `too_many_buckets`, \
         `too_many_readings`, `bad_path`, `bad_query`", body = ErrorBody),
        (status = 503, description = "`storage_unavailable`: the store cannot be read", body = ErrorBody),
    ),
)]
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

/// A bucket of a series.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct BucketJson {
    /// Its start, ms of device time.
    start_ms: u64,
    /// Readings in it.
    count: u64,
    /// Lowest value.
    min: f64,
    /// Highest value.
    max: f64,
    /// Mean value.
    mean: f64,
    /// Value of its earliest reading by device time.
    first: f64,
    /// Value of its latest reading by device time.
    last: f64,
}

/// `GET /v1/devices/{address}/streams/{stream}/series`.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct SeriesJson {
    /// The buckets that hold readings, oldest first.
    buckets: Vec<BucketJson>,
}

/// `{"buckets": [...]}`, serialized.
fn series_json(buckets: &[iotchain_storage::Bucket]) -> Vec<u8> {
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
    serde_json::to_vec(&SeriesJson { buckets }).expect("buckets serialize")
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
    fn buckets_are_a_number_and_a_unit_and_anything_else_is_refused() {
        assert_eq!(bucket_ms("1m").unwrap(), 60_000);
        assert_eq!(bucket_ms("15m").unwrap(), 900_000);
        assert_eq!(bucket_ms("7d").unwrap(), 7 * 86_400_000);
        // A unit of more than one byte (schemathesis sent `G\u{fdaa}\u{8a}`: a split at the
        // last byte panicked), empty, no number, zero, too long, another unit.
        for bad in [
            "G\u{fdaa}\u{8a}",
            "1\u{e9}",
            "\u{e9}",
            "",
            "m",
            "0h",
            "527041m",
            "1w",
            "-1h",
        ] {
            assert_eq!(bucket_ms(bad).unwrap_err().code, "bad_bucket", "{bad:?}");
        }
    }

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
