//! Messages the service writes itself, byte for byte what prost would write
//! for the generated types, but straight from the scheduler's values.
//!
//! A lease of 1,000 keys as a generated `LeaseResponse` is 1,000 table
//! names allocated, 1,000 shared key buffers counted up and down, and a
//! pass to size every key before another writes it; each freed on another
//! thread than the one that made it. [`LeaseAnswer`] writes the same bytes
//! from the scheduler's [`LeasedBatch`] (one buffer of key bytes, table ids)
//! in one pass. Clients decode it as the generated `LeaseResponse`: the wire
//! format, and so the API, is unchanged.
//!
//! The `Executor` server below is generated over these types (see
//! `build.rs`); every other message is the generated one.

use prost::bytes::BufMut;
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint};
use tonic::codec::EncodeBuf;

use super::codec::Outgoing;
use super::proto;
use crate::scheduler::LeasedBatch;

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
                // Every tag and varint at its longest.
                let per_key_fields = 7 * 11;
                let tables: usize = batch.iter().map(|key| key.table.len()).sum();
                22 + batch.key_bytes.len() + tables + batch.len() * per_key_fields
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
                let mut batch = LeasedBatch::default();
                batch.id = id;
                batch.expires_us = expires_us;
                batch.tables = tables;
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
