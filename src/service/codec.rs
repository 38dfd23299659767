//! The API's gRPC codec: prost's, except that a message that does not
//! decode (truncated, a string that is not UTF-8, a wrong wire type) is the
//! caller's error, INVALID_ARGUMENT saying what was wrong, rather than
//! INTERNAL, which would blame the service; and that what is sent may be a
//! message the service encodes itself ([`Outgoing`]).

use std::marker::PhantomData;

use prost::Message;
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

/// A message to send: any generated one, or one the service writes in the
/// same wire format straight from its own values (`service::wire`).
pub trait Outgoing: Send + 'static {
    fn encode_to(&self, buf: &mut EncodeBuf<'_>);
}

/// A message to receive: any generated one, or one the service reads
/// itself straight into its own values (`service::wire`).
pub trait Incoming: Sized + Send + 'static {
    fn decode_from(buf: &mut DecodeBuf<'_>) -> Result<Self, Status>;
}

impl<U: Message + Default + Send + 'static> Incoming for U {
    fn decode_from(buf: &mut DecodeBuf<'_>) -> Result<Self, Status> {
        U::decode(buf).map_err(undecodable)
    }
}

/// The caller's message did not decode: its error, not the service's.
pub fn undecodable(error: impl std::fmt::Display) -> Status {
    Status::invalid_argument(format!("the message does not decode: {error}"))
}

impl<T: Message + Send + 'static> Outgoing for T {
    fn encode_to(&self, buf: &mut EncodeBuf<'_>) {
        self.encode(buf)
            .expect("an encode buffer grows to fit whatever is written");
    }
}

pub struct ApiCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for ApiCodec<T, U> {
    fn default() -> Self {
        ApiCodec(PhantomData)
    }
}

impl<T, U> Codec for ApiCodec<T, U>
where
    T: Outgoing,
    U: Incoming,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ApiEncoder<T>;
    type Decoder = ApiDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ApiEncoder(PhantomData)
    }

    fn decoder(&mut self) -> Self::Decoder {
        ApiDecoder(PhantomData)
    }
}

pub struct ApiEncoder<T>(PhantomData<T>);

impl<T: Outgoing> Encoder for ApiEncoder<T> {
    type Item = T;
    type Error = Status;

    fn encode(&mut self, item: T, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        item.encode_to(buf);
        Ok(())
    }
}

pub struct ApiDecoder<U>(PhantomData<U>);

impl<U: Incoming> Decoder for ApiDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        U::decode_from(buf).map(Some)
    }
}
