//! Hands tonic each incoming gRPC message's 5-byte prefix in a body frame
//! of its own, so a long-lived stream's decode buffer stays at its initial
//! 8 KiB instead of growing to two to four times the largest report.
//!
//! Why: after reading a message's prefix, tonic 0.14's `Streaming` calls
//! `BytesMut::reserve(len)`, which asks for `len` bytes *beyond* those
//! already buffered. When the whole message came in the same DATA frame as
//! its prefix (the usual case for a report of a few KB), the buffer
//! doubles although nothing more is needed, and it never shrinks. At
//! 10,000 streams that was about 24 KiB a stream, 240 MiB of the
//! collector's memory. Upstream: grpc/grpc-rust pull request 2735
//! ("avoid excess decode buffer reservation", not in a release). With the
//! prefix alone in the buffer, the reservation finds room, and the message
//! that follows is copied into the space the buffer reclaims.
//!
//! Only frame boundaries change: the bytes, their order, trailers and
//! errors pass through as they came. Remove this once tonic reserves only
//! what is missing.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http_body::{Body, Frame};
use tonic::codegen::Service;
use tonic::server::NamedService;

/// Length of the gRPC message prefix: a compression flag and a big-endian
/// u32 length.
const PREFIX: usize = 5;

/// A gRPC service whose request bodies go through [`SplitPrefixes`].
#[derive(Debug, Clone)]
pub struct PrefixFramed<S>(pub S);

impl<S> Service<http::Request<tonic::body::Body>> for PrefixFramed<S>
where
    S: Service<http::Request<tonic::body::Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        self.0
            .call(request.map(|body| tonic::body::Body::new(SplitPrefixes::new(body))))
    }
}

impl<S: NamedService> NamedService for PrefixFramed<S> {
    const NAME: &'static str = S::NAME;
}

/// Where the bytes seen so far leave the message stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Position {
    /// Inside a prefix, with `have` of its bytes already passed on.
    Prefix { have: usize, bytes: [u8; PREFIX] },
    /// Inside a message, with `left` bytes of it still to come.
    Message { left: u64 },
}

/// A request body whose data frames never mix a message prefix with
/// anything else.
#[derive(Debug)]
pub struct SplitPrefixes<B> {
    inner: B,
    /// The rest of the last data frame read from `inner`.
    pending: Bytes,
    at: Position,
}

impl<B> SplitPrefixes<B> {
    pub fn new(inner: B) -> Self {
        Self {
            inner,
            pending: Bytes::new(),
            at: Position::Prefix {
                have: 0,
                bytes: [0; PREFIX],
            },
        }
    }

    /// The next piece of `pending`: up to the end of the prefix or message
    /// it is in, whichever comes first.
    fn next_piece(&mut self) -> Bytes {
        match &mut self.at {
            Position::Prefix { have, bytes } => {
                let take = (PREFIX - *have).min(self.pending.len());
                bytes[*have..*have + take].copy_from_slice(&self.pending[..take]);
                *have += take;
                if *have == PREFIX {
                    let left =
                        u64::from(u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]));
                    self.at = Self::after_prefix(left);
                }
                self.pending.split_to(take)
            }
            Position::Message { left } => {
                let take = usize::try_from(*left)
                    .unwrap_or(usize::MAX)
                    .min(self.pending.len());
                *left -= take as u64;
                if *left == 0 {
                    self.at = Self::after_prefix(0);
                }
                self.pending.split_to(take)
            }
        }
    }

    fn after_prefix(left: u64) -> Position {
        if left == 0 {
            Position::Prefix {
                have: 0,
                bytes: [0; PREFIX],
            }
        } else {
            Position::Message { left }
        }
    }
}

impl<B> Body for SplitPrefixes<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.as_mut().get_mut();
        while this.pending.is_empty() {
            match std::task::ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(mut data) => this.pending = data.copy_to_bytes(data.remaining()),
                    // Trailers (and frame kinds yet to come) pass through.
                    Err(other) => return Poll::Ready(Some(Ok(other))),
                },
                other => return Poll::Ready(other),
            }
        }
        Poll::Ready(Some(Ok(Frame::data(this.next_piece()))))
    }

    fn is_end_stream(&self) -> bool {
        self.pending.is_empty() && self.inner.is_end_stream()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};

    type Frames = StreamBody<
        tokio_stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, std::convert::Infallible>>>,
    >;

    fn body(chunks: Vec<Vec<u8>>) -> SplitPrefixes<Frames> {
        let frames: Vec<_> = chunks
            .into_iter()
            .map(|c| Ok(Frame::data(Bytes::from(c))))
            .collect();
        SplitPrefixes::new(StreamBody::new(tokio_stream::iter(frames)))
    }

    fn message(len: usize, fill: u8) -> Vec<u8> {
        let mut m = vec![0u8];
        m.extend_from_slice(&(len as u32).to_be_bytes());
        m.extend(std::iter::repeat_n(fill, len));
        m
    }

    async fn pieces(mut b: SplitPrefixes<Frames>) -> Vec<Bytes> {
        let mut out = Vec::new();
        while let Some(frame) = b.frame().await {
            out.push(frame.unwrap().into_data().unwrap());
        }
        out
    }

    #[tokio::test]
    async fn two_messages_in_one_frame_come_out_as_prefix_message_prefix_message() {
        let mut frame = message(3, 7);
        frame.extend(message(2, 9));
        let got = pieces(body(vec![frame])).await;
        let want: Vec<&[u8]> = vec![&[0, 0, 0, 0, 3], &[7, 7, 7], &[0, 0, 0, 0, 2], &[9, 9]];
        assert_eq!(got, want);
    }

    #[tokio::test]
    async fn a_prefix_split_across_frames_and_an_empty_message_keep_their_bytes() {
        let mut stream = message(0, 0);
        stream.extend(message(4, 1));
        // Cut inside the second prefix and inside the message.
        let chunks = vec![
            stream[..7].to_vec(),
            stream[7..12].to_vec(),
            stream[12..].to_vec(),
        ];
        let got = pieces(body(chunks)).await;
        let want: Vec<&[u8]> = vec![&[0, 0, 0, 0, 0], &[0, 0], &[0, 0, 4], &[1, 1], &[1, 1]];
        assert_eq!(got, want);
    }

    #[tokio::test]
    async fn trailers_pass_through() {
        let mut trailers = http::HeaderMap::new();
        trailers.insert("grpc-status", "0".parse().unwrap());
        let frames: Vec<Result<_, std::convert::Infallible>> = vec![
            Ok(Frame::data(Bytes::from(message(1, 5)))),
            Ok(Frame::trailers(trailers.clone())),
        ];
        let mut b = SplitPrefixes::new(StreamBody::new(tokio_stream::iter(frames)));
        let mut next = async || b.frame().await.unwrap().unwrap();
        assert_eq!(next().await.into_data().unwrap().len(), 5);
        assert_eq!(next().await.into_data().unwrap().len(), 1);
        assert_eq!(next().await.into_trailers().unwrap(), trailers);
        assert!(b.frame().await.is_none());
    }

    /// Every way of cutting a stream of four messages (one empty) into
    /// three frames: the bytes come out the same, and no piece crosses the
    /// start or the end of a prefix, so tonic always finds a prefix alone.
    #[tokio::test]
    async fn any_framing_keeps_the_bytes_and_isolates_every_prefix() {
        let mut stream = Vec::new();
        let mut bounds = Vec::new();
        for (i, len) in [3usize, 0, 11, 1].into_iter().enumerate() {
            bounds.push(stream.len());
            bounds.push(stream.len() + PREFIX);
            stream.extend(message(len, i as u8 + 1));
        }
        for a in 0..=stream.len() {
            for b in a..=stream.len() {
                let chunks = vec![
                    stream[..a].to_vec(),
                    stream[a..b].to_vec(),
                    stream[b..].to_vec(),
                ];
                let got = pieces(body(chunks)).await;
                assert_eq!(got.concat(), stream, "cuts {a}, {b}");
                let mut start = 0;
                for piece in &got {
                    let end = start + piece.len();
                    assert!(!piece.is_empty(), "cuts {a}, {b}");
                    assert!(
                        !bounds.iter().any(|&x| start < x && x < end),
                        "cuts {a}, {b}: piece {start}..{end} crosses a prefix boundary"
                    );
                    start = end;
                }
            }
        }
    }
}
