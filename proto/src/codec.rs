//! The gRPC codec of every Xunjian service: prost, with small starting
//! buffers.
//!
//! tonic gives each stream an 8 KiB encode buffer and an 8 KiB decode
//! buffer, and a decode buffer grows to hold the largest message seen and
//! keeps that size for the life of the stream. An agent's stream lives for
//! days and its largest message (the inventory on connect) is sent once, so
//! with 10,000 agents connected those buffers were a third of the
//! collector's memory. Starting small, the decode buffer grows only to what
//! the messages need, and the encode buffer (acks, a few bytes each) stays
//! small.

use std::marker::PhantomData;

use prost::Message;
use tonic::codec::{BufferSettings, Codec};
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};

/// Where both buffers start; they grow as messages need.
const BUFFER_START: usize = 1024;
/// tonic's default: how much encoded data a stream gathers before it yields
/// it to the transport.
const YIELD_THRESHOLD: usize = 32 * 1024;

/// prost encoding with [`BUFFER_START`]-byte starting buffers.
#[derive(Debug, Clone)]
pub struct CompactCodec<T, U> {
    _pd: PhantomData<(T, U)>,
}

impl<T, U> Default for CompactCodec<T, U> {
    fn default() -> Self {
        Self { _pd: PhantomData }
    }
}

fn settings() -> BufferSettings {
    BufferSettings::new(BUFFER_START, YIELD_THRESHOLD)
}

impl<T, U> Codec for CompactCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<T, U>::raw_encoder(settings())
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstCodec::<T, U>::raw_decoder(settings())
    }
}
