//! The executor calls' two large messages, written and read by the service
//! itself from and into the scheduler's values, in prost's wire format.
//!
//! A lease of 1,000 keys as a generated `LeaseResponse` is 1,000 table
//! names allocated, 1,000 shared key buffers counted up and down, and a
//! pass to size every key before another writes it. [`LeaseAnswer`] writes
//! the same bytes from the scheduler's [`LeasedBatch`] (one buffer of key
//! bytes, table ids) in one pass. An acknowledgement naming 1,000 keys
//! read into the generated `AcknowledgeRequest` is 1,000 table names
//! allocated; [`AckRequest`] reads it into the scheduler's
//! [`Ack`](crate::scheduler::Ack)s with one table name per run of keys of
//! the same table. Clients use the generated types: the wire format, and so
//! the API, is unchanged.
//!
//! The `Executor` server below is generated over these types (see
//! `build.rs`); every other message is the generated one.

use std::sync::Arc;

use prost::bytes::{Buf, BufMut, Bytes};
use prost::encoding::{
    DecodeContext, WireType, check_wire_type, decode_key, decode_varint, encode_key, encode_varint,
    encoded_len_varint, skip_field,
};
use tonic::Status;
use tonic::codec::{DecodeBuf, EncodeBuf};

use super::codec::{Incoming, Outgoing, undecodable};
use super::proto;
use crate::scheduler::{AckResult, LeasedBatch};

include!(concat!(env!("OUT_DIR"), "/wire/shadowcast.v1.rs"));

/// The answer to a `Lease` call (`LeaseResponse` on the wire).
pub enum LeaseAnswer {
    /// Keys leased.
    Leased(LeasedBatch),
    /// No keys, and why.
    Idle(proto::LeaseResponse),
}

/// `LeaseResponse`'s and `LeasedKey`'s field numbers.
mod field {
    pub const LEASE_ID: u32 = 1;
    pub const EXPIRES_AT_US: u32 = 2;
    pub const KEYS: u32 = 3;

    pub const TABLE: u32 = 1;
    pub const KEY: u32 = 2;
    pub const SIZE_BYTES: u32 = 3;
    pub const PRIORITY: u32 = 4;
    pub const DESTINATION: u32 = 5;
    pub const MIN_VERSION: u32 = 6;
}

impl LeaseAnswer {
    /// Writes the message as prost writes a `LeaseResponse`: fields in
    /// number order, those at their default value left out.
    pub fn encode(&self, buf: &mut impl BufMut) {
        let batch = match self {
            LeaseAnswer::Idle(response) => {
                prost::Message::encode(response, buf)
                    .expect("an encode buffer grows to fit whatever is written");
                return;
            }
            LeaseAnswer::Leased(batch) => batch,
        };
        put_varint_field(field::LEASE_ID, batch.id, buf);
        put_varint_field(field::EXPIRES_AT_US, batch.expires_us as u64, buf);
        for key in batch.iter() {
            let bytes = &batch.key_bytes[key.key_range];
            // The scheduler's classes count from 0, the API's from 1
            // (0 is PRIORITY_UNSPECIFIED).
            let priority = u64::from(key.priority) + 1;
            let length = bytes_field_len(field::TABLE, key.table.len())
                + bytes_field_len(field::KEY, bytes.len())
                + varint_field_len(field::SIZE_BYTES, key.size_bytes)
                + varint_field_len(field::PRIORITY, priority)
                + varint_field_len(field::DESTINATION, u64::from(key.destination))
                + varint_field_len(field::MIN_VERSION, key.min_version);
            encode_key(field::KEYS, WireType::LengthDelimited, buf);
            encode_varint(length as u64, buf);
            put_bytes_field(field::TABLE, key.table.as_bytes(), buf);
            put_bytes_field(field::KEY, bytes, buf);
            put_varint_field(field::SIZE_BYTES, key.size_bytes, buf);
            put_varint_field(field::PRIORITY, priority, buf);
            put_varint_field(field::DESTINATION, u64::from(key.destination), buf);
            put_varint_field(field::MIN_VERSION, key.min_version, buf);
        }
    }

    /// An upper bound of the encoded size, to reserve the buffer once.
    fn size_hint(&self) -> usize {
        match self {
            LeaseAnswer::Idle(_) => 0,
            LeaseAnswer::Leased(batch) => {
                // Every tag and varint at its longest, every table name the
                // longest: no pass over the keys.
                let per_key_fields = 7 * 11;
                let longest_table = batch.tables.iter().map(String::len).max().unwrap_or(0);
                22 + batch.key_bytes.len() + batch.len() * (per_key_fields + longest_table)
            }
        }
    }
}

impl Outgoing for LeaseAnswer {
    fn encode_to(&self, buf: &mut EncodeBuf<'_>) {
        buf.reserve(self.size_hint());
        self.encode(buf);
    }
}

/// An `AcknowledgeRequest` as the service reads it.
#[derive(Debug, Default, PartialEq)]
pub struct AckRequest {
    pub lease_id: u64,
    pub acks: Vec<KeyAck>,
    pub others_copied_at_leased_version: bool,
}

/// One key an acknowledgement names, as read.
#[derive(Debug, PartialEq)]
pub struct KeyAck {
    /// Shared with the keys before it of the same table.
    pub table: Arc<str>,
    /// A slice of the request's buffer.
    pub key: Bytes,
    /// `None` when the key names no result (the call is refused, naming it).
    pub result: Option<AckResult>,
}

/// `AcknowledgeRequest`'s and `KeyAck`'s field numbers.
mod ack_field {
    pub const LEASE_ID: u32 = 1;
    pub const ACKS: u32 = 2;
    pub const OTHERS_COPIED: u32 = 3;

    pub const TABLE: u32 = 1;
    pub const KEY: u32 = 2;
    pub const COPIED_VERSION: u32 = 3;
    pub const FAILURE: u32 = 4;
}

/// Why a message does not decode, in the words prost would use.
#[derive(Debug)]
pub struct Undecodable(String);

impl std::fmt::Display for Undecodable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<prost::DecodeError> for Undecodable {
    fn from(error: prost::DecodeError) -> Self {
        Undecodable(error.to_string())
    }
}

impl AckRequest {
    /// Reads the message as prost reads an `AcknowledgeRequest` (the last
    /// of a repeated scalar wins, unknown fields are skipped, strings must
    /// be UTF-8), with keys sharing `message`'s buffer.
    pub fn decode(message: Bytes) -> Result<AckRequest, Undecodable> {
        let mut request = AckRequest::default();
        let mut last_table: Option<Arc<str>> = None;
        let mut rest = &message[..];
        while rest.has_remaining() {
            let (tag, wire_type) = decode_key(&mut rest)?;
            match tag {
                ack_field::LEASE_ID => {
                    check_wire_type(WireType::Varint, wire_type)?;
                    request.lease_id = decode_varint(&mut rest)?;
                }
                ack_field::ACKS => {
                    check_wire_type(WireType::LengthDelimited, wire_type)?;
                    let key_ack = delimited(&mut rest)?;
                    request
                        .acks
                        .push(decode_key_ack(&message, key_ack, &mut last_table)?);
                }
                ack_field::OTHERS_COPIED => {
                    check_wire_type(WireType::Varint, wire_type)?;
                    request.others_copied_at_leased_version = decode_varint(&mut rest)? != 0;
                }
                _ => skip_field(wire_type, tag, &mut rest, DecodeContext::default())?,
            }
        }
        Ok(request)
    }
}

/// A length-delimited field's bytes (after its key), taken off `rest`.
fn delimited<'a>(rest: &mut &'a [u8]) -> Result<&'a [u8], Undecodable> {
    let length = decode_varint(rest)?;
    if length > rest.len() as u64 {
        return Err(Undecodable("buffer underflow".into()));
    }
    let (field, after) = rest.split_at(length as usize);
    *rest = after;
    Ok(field)
}

/// Reads the `KeyAck` whose bytes are `key_ack`, a part of `message`
/// (its key is a slice of `message`).
fn decode_key_ack(
    message: &Bytes,
    key_ack: &[u8],
    last_table: &mut Option<Arc<str>>,
) -> Result<KeyAck, Undecodable> {
    let mut table: Option<Arc<str>> = None;
    let mut key = Bytes::new();
    let mut result = None;
    let mut rest = key_ack;
    while rest.has_remaining() {
        let (tag, wire_type) = decode_key(&mut rest)?;
        match tag {
            ack_field::TABLE => {
                check_wire_type(WireType::LengthDelimited, wire_type)?;
                let name = delimited(&mut rest)?;
                let shared = match last_table {
                    Some(last) if last.as_bytes() == name => last.clone(),
                    _ => {
                        let name: Arc<str> = utf8(name)?.into();
                        *last_table = Some(name.clone());
                        name
                    }
                };
                table = Some(shared);
            }
            ack_field::KEY => {
                check_wire_type(WireType::LengthDelimited, wire_type)?;
                key = message.slice_ref(delimited(&mut rest)?);
            }
            ack_field::COPIED_VERSION => {
                check_wire_type(WireType::Varint, wire_type)?;
                result = Some(AckResult::Copied {
                    version: decode_varint(&mut rest)?,
                });
            }
            ack_field::FAILURE => {
                check_wire_type(WireType::LengthDelimited, wire_type)?;
                result = Some(AckResult::Failed {
                    reason: utf8(delimited(&mut rest)?)?.to_string(),
                });
            }
            _ => skip_field(wire_type, tag, &mut rest, DecodeContext::default())?,
        }
    }
    Ok(KeyAck {
        table: table.unwrap_or_else(|| Arc::from("")),
        key,
        result,
    })
}

fn utf8(bytes: &[u8]) -> Result<&str, Undecodable> {
    std::str::from_utf8(bytes)
        .map_err(|_| Undecodable("invalid string value: data is not UTF-8 encoded".into()))
}

impl Incoming for AckRequest {
    fn decode_from(buf: &mut DecodeBuf<'_>) -> Result<Self, Status> {
        let message = buf.copy_to_bytes(buf.remaining());
        AckRequest::decode(message).map_err(undecodable)
    }
}

fn varint_field_len(tag: u32, value: u64) -> usize {
    if value == 0 {
        0
    } else {
        encoded_len_varint(u64::from(tag << 3)) + encoded_len_varint(value)
    }
}

fn bytes_field_len(tag: u32, len: usize) -> usize {
    if len == 0 {
        0
    } else {
        encoded_len_varint(u64::from(tag << 3)) + encoded_len_varint(len as u64) + len
    }
}

fn put_varint_field(tag: u32, value: u64, buf: &mut impl BufMut) {
    if value != 0 {
        encode_key(tag, WireType::Varint, buf);
        encode_varint(value, buf);
    }
}

fn put_bytes_field(tag: u32, bytes: &[u8], buf: &mut impl BufMut) {
    if !bytes.is_empty() {
        encode_key(tag, WireType::LengthDelimited, buf);
        encode_varint(bytes.len() as u64, buf);
        buf.put_slice(bytes);
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use prost::Message;

    use super::*;

    /// The lease as the generated types hold it, the way the service built
    /// its answers before this module.
    fn generated(batch: &LeasedBatch) -> proto::LeaseResponse {
        proto::LeaseResponse {
            lease_id: batch.id,
            expires_at_us: batch.expires_us,
            keys: batch
                .iter()
                .map(|key| proto::LeasedKey {
                    table: key.table.to_string(),
                    key: batch.key_bytes[key.key_range].to_vec().into(),
                    size_bytes: key.size_bytes,
                    priority: key.priority as i32 + 1,
                    destination: key.destination,
                    min_version: key.min_version,
                })
                .collect(),
            ..Default::default()
        }
    }

    fn batches() -> impl Strategy<Value = LeasedBatch> {
        let key = (
            0..3u32,
            prop::collection::vec(any::<u8>(), 0..200),
            prop_oneof![Just(0u64), any::<u64>()],
            0..4u32,
            prop_oneof![Just(0u32), any::<u32>()],
            prop_oneof![Just(0u64), any::<u64>()],
        );
        (
            prop_oneof![Just(0u64), any::<u64>()],
            any::<i64>(),
            prop::collection::vec("[a-z_]{0,40}", 3),
            prop::collection::vec(key, 0..50),
        )
            .prop_map(|(id, expires_us, tables, keys)| {
                let mut batch = LeasedBatch::new(id, expires_us, tables);
                for (table, key, size, priority, destination, version) in keys {
                    batch.push(table, &key, size, priority, destination, version);
                }
                batch
            })
    }

    proptest! {
        #[test]
        fn a_lease_is_written_as_prost_writes_the_generated_message(batch in batches()) {
            let expected = generated(&batch).encode_to_vec();
            let answer = LeaseAnswer::Leased(batch);
            let mut written = Vec::new();
            answer.encode(&mut written);
            prop_assert!(written.len() <= answer.size_hint());
            prop_assert_eq!(written, expected);
        }
    }

    /// The request as prost reads the generated message, put in the
    /// service's form.
    fn read_by_prost(message: &[u8]) -> Result<AckRequest, prost::DecodeError> {
        let generated = proto::AcknowledgeRequest::decode(message)?;
        Ok(AckRequest {
            lease_id: generated.lease_id,
            acks: generated
                .acks
                .into_iter()
                .map(|ack| KeyAck {
                    table: ack.table.into(),
                    key: ack.key,
                    result: ack.result.map(|result| match result {
                        proto::key_ack::Result::CopiedVersion(version) => {
                            AckResult::Copied { version }
                        }
                        proto::key_ack::Result::Failure(reason) => AckResult::Failed { reason },
                    }),
                })
                .collect(),
            others_copied_at_leased_version: generated.others_copied_at_leased_version,
        })
    }

    fn ack_requests() -> impl Strategy<Value = proto::AcknowledgeRequest> {
        let result = prop_oneof![
            Just(None),
            any::<u64>().prop_map(|v| Some(proto::key_ack::Result::CopiedVersion(v))),
            "[a-zé ]{0,12}".prop_map(|r| Some(proto::key_ack::Result::Failure(r))),
        ];
        let key_ack = (
            prop_oneof![Just(""), Just("orders"), Just("línea"), Just("users")],
            prop::collection::vec(any::<u8>(), 0..40),
            result,
        )
            .prop_map(|(table, key, result)| proto::KeyAck {
                table: table.to_string(),
                key: key.into(),
                result,
            });
        (
            prop_oneof![Just(0u64), any::<u64>()],
            prop::collection::vec(key_ack, 0..30),
            any::<bool>(),
        )
            .prop_map(|(lease_id, acks, others)| proto::AcknowledgeRequest {
                lease_id,
                acks,
                others_copied_at_leased_version: others,
            })
    }

    /// A change to a valid message: a byte replaced, inserted or removed,
    /// or the message cut short, at a place chosen by the fraction.
    #[derive(Clone, Debug)]
    enum Damage {
        Replace(f64, u8),
        Insert(f64, u8),
        Remove(f64),
        Truncate(f64),
    }

    fn damages() -> impl Strategy<Value = Vec<Damage>> {
        let damage = prop_oneof![
            (0.0..1.0, any::<u8>()).prop_map(|(at, byte)| Damage::Replace(at, byte)),
            (0.0..1.0, any::<u8>()).prop_map(|(at, byte)| Damage::Insert(at, byte)),
            (0.0..1.0).prop_map(Damage::Remove),
            (0.0..1.0).prop_map(Damage::Truncate),
        ];
        prop::collection::vec(damage, 1..4)
    }

    fn damaged(mut message: Vec<u8>, damages: &[Damage]) -> Vec<u8> {
        for damage in damages {
            let at = |fraction: f64| (fraction * message.len() as f64) as usize;
            match *damage {
                Damage::Replace(fraction, byte) if !message.is_empty() => {
                    let at = at(fraction).min(message.len() - 1);
                    message[at] = byte;
                }
                Damage::Insert(fraction, byte) => {
                    let at = at(fraction);
                    message.insert(at, byte);
                }
                Damage::Remove(fraction) if !message.is_empty() => {
                    let at = at(fraction).min(message.len() - 1);
                    message.remove(at);
                }
                Damage::Truncate(fraction) => {
                    let at = at(fraction);
                    message.truncate(at);
                }
                _ => {}
            }
        }
        message
    }

    proptest! {
        #[test]
        fn an_acknowledgement_is_read_as_prost_reads_the_generated_message(
            request in ack_requests()
        ) {
            let message = request.encode_to_vec();
            let ours = AckRequest::decode(Bytes::from(message.clone())).unwrap();
            prop_assert_eq!(ours, read_by_prost(&message).unwrap());
        }

    }

    proptest! {
        // Most damage is caught by the first check it meets: many cases
        // are needed to reach each of the others.
        #![proptest_config(ProptestConfig::with_cases(20_000))]

        #[test]
        fn a_damaged_acknowledgement_is_refused_exactly_when_prost_refuses_it(
            request in ack_requests(),
            damages in damages(),
        ) {
            let message = damaged(request.encode_to_vec(), &damages);
            let ours = AckRequest::decode(Bytes::from(message.clone()));
            match read_by_prost(&message) {
                Ok(expected) => prop_assert_eq!(ours.unwrap(), expected),
                Err(error) => prop_assert!(ours.is_err(), "prost refused it: {error}"),
            }
        }
    }

    #[test]
    fn keys_of_one_table_share_its_name() {
        let key_ack = |table: &str| proto::KeyAck {
            table: table.to_string(),
            key: vec![1].into(),
            result: Some(proto::key_ack::Result::CopiedVersion(1)),
        };
        let message = proto::AcknowledgeRequest {
            acks: vec![key_ack("a"), key_ack("a"), key_ack("b"), key_ack("a")],
            ..Default::default()
        }
        .encode_to_vec();
        let read = AckRequest::decode(message.into()).unwrap();
        let tables: Vec<&Arc<str>> = read.acks.iter().map(|ack| &ack.table).collect();
        assert!(Arc::ptr_eq(tables[0], tables[1]));
        assert!(!Arc::ptr_eq(tables[1], tables[3]));
        assert_eq!(&**tables[2], "b");
        assert_eq!(&**tables[3], "a");
    }

    #[test]
    fn an_idle_answer_is_the_generated_message() {
        let idle = proto::LeaseResponse {
            idle_reason: proto::IdleReason::OverBudget as i32,
            retry_after_ms: 250,
            ..Default::default()
        };
        let mut written = Vec::new();
        LeaseAnswer::Idle(idle.clone()).encode(&mut written);
        assert_eq!(proto::LeaseResponse::decode(&written[..]).unwrap(), idle);
    }
}
