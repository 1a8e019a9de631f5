//! [`Streaming<T>`]: a stream of values crossing the plugin boundary, the type of
//! streaming arguments and results of `#[intercom::plugin]` methods.
//!
//! A method returning `Result<Streaming<T>, E>` is a gRPC *server-streaming* call; a method
//! whose only argument is a `Streaming<T>` is a *client-streaming* call (both at once is a
//! bidirectional call).
//!
//! Back-pressure and cancellation come from HTTP/2 flow control and the stream's owner:
//! - the sending side's stream is polled only when the connection has window for more
//!   data, so a producer behind [`Streaming::channel`] waits in [`StreamSender::send`]
//!   while the consumer is slow;
//! - dropping a received `Streaming` cancels the call (an HTTP/2 `RST_STREAM`): the peer
//!   drops its stream, so its [`StreamSender::send`] fails and
//!   [`StreamSender::closed`] resolves, which is how a producer task learns to stop.
//!
//! # Caveats
//!
//! Each value is one gRPC message, usually one HTTP/2 DATA frame. h2 (0.4.20 and later)
//! closes a connection whose peer leaves more than a few hundred *small* (< 256 bytes)
//! frames unread (`GOAWAY ENHANCE_YOUR_CALM "too_many_data_frames"`), and hyper does not
//! expose that budget. A plugin streaming many tiny values to a host that stops reading can
//! therefore lose its connection: batch tiny values into larger ones (`Vec<T>` items).

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
use tonic::Status;

/// A boxed, `Send` stream of `Result<T, Status>`: the values of a streaming plugin call.
///
/// Build one from any stream ([`Streaming::new`], [`Streaming::from_stream`]), from an
/// iterator ([`Streaming::from_iter`]), or from a bounded channel whose sender waits when
/// the consumer is slow ([`Streaming::channel`]). Read it with
/// [`message`](Streaming::message) or as a [`Stream`].
///
/// An `Err` item ends the call: sent by a plugin, it reaches the host as that status; in a
/// client-streaming argument, it aborts the call and the caller gets that status back.
///
/// ```
/// # async fn f() -> Result<(), intercom::Status> {
/// use intercom::Streaming;
///
/// let (tx, mut numbers) = Streaming::channel(4);
/// tokio::spawn(async move {
///     for n in 0..10u32 {
///         // Waits while 4 values are unread; fails once the reader is gone.
///         if tx.send(n).await.is_err() {
///             break;
///         }
///     }
/// });
/// while let Some(n) = numbers.message().await? {
///     println!("{n}");
/// }
/// # Ok(()) }
/// ```
#[must_use = "streams do nothing unless polled"]
pub struct Streaming<T> {
    inner: Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>,
}

impl<T> fmt::Debug for Streaming<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Streaming")
            .field("item", &std::any::type_name::<T>())
            .finish_non_exhaustive()
    }
}

impl<T: Send + 'static> Streaming<T> {
    /// Wraps a stream of results.
    pub fn new(stream: impl Stream<Item = Result<T, Status>> + Send + 'static) -> Self {
        Self {
            inner: Box::pin(stream),
        }
    }

    /// Wraps a stream of plain values.
    pub fn from_stream(stream: impl Stream<Item = T> + Send + 'static) -> Self {
        Self::new(stream.map(Ok))
    }

    /// The values of `iter`, in order.
    #[allow(clippy::should_implement_trait)] // also implemented, as `FromIterator`
    pub fn from_iter<I>(iter: I) -> Self
    where
        I: IntoIterator<Item = T>,
        I::IntoIter: Send + 'static,
    {
        Self::from_stream(futures::stream::iter(iter))
    }

    /// A stream that ends at once.
    pub fn empty() -> Self {
        Self::new(futures::stream::empty())
    }

    /// A stream that yields `status` and ends.
    pub fn error(status: Status) -> Self {
        Self::new(futures::stream::once(async move { Err(status) }))
    }

    /// A bounded channel: the [`StreamSender`] waits while `buffer` values are unread, and
    /// fails once this stream is dropped (the peer cancelled or finished reading).
    ///
    /// # Panics
    /// If `buffer` is 0.
    pub fn channel(buffer: usize) -> (StreamSender<T>, Self) {
        let (tx, rx) = mpsc::channel(buffer);
        let stream = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        (StreamSender { tx }, Self::new(stream))
    }

    /// The next value: `Ok(None)` at the end, `Err` if the stream failed.
    ///
    /// # Errors
    /// The status the peer (or the producer) ended the stream with.
    ///
    /// # Cancel safety
    /// Cancel safe: dropping the future loses no value.
    pub async fn message(&mut self) -> Result<Option<T>, Status> {
        self.inner.next().await.transpose()
    }

    /// Maps each value with `f`.
    pub fn map_values<U: Send + 'static>(
        self,
        mut f: impl FnMut(T) -> U + Send + 'static,
    ) -> Streaming<U> {
        Streaming::new(self.inner.map(move |item| item.map(&mut f)))
    }
}

impl<T: Send + 'static> FromIterator<T> for Streaming<T> {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        let values: Vec<T> = iter.into_iter().collect();
        Self::from_stream(futures::stream::iter(values))
    }
}

impl<T> Stream for Streaming<T> {
    type Item = Result<T, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.size_hint()
    }
}

/// The sending half of [`Streaming::channel`].
pub struct StreamSender<T> {
    tx: mpsc::Sender<Result<T, Status>>,
}

impl<T> Clone for StreamSender<T> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
        }
    }
}

impl<T> fmt::Debug for StreamSender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamSender")
            .field("closed", &self.tx.is_closed())
            .finish_non_exhaustive()
    }
}

/// [`StreamSender::send`] failed: the [`Streaming`] was dropped (the peer cancelled the
/// call or the connection ended). The value is handed back.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("failed to send on a stream: the receiver is gone")]
pub struct SendError<T>(pub T);

impl<T: Send + 'static> StreamSender<T> {
    /// Sends `value`, waiting while the channel is full.
    ///
    /// # Errors
    /// [`SendError`] with `value` once the stream is dropped.
    ///
    /// # Cancel safety
    /// Cancel safe: if the future is dropped, `value` was not sent.
    pub async fn send(&self, value: T) -> Result<(), SendError<T>> {
        self.tx.send(Ok(value)).await.map_err(|e| match e.0 {
            Ok(value) => SendError(value),
            Err(_) => unreachable!("sent an Ok value"),
        })
    }

    /// Ends the stream with `status` (the receiver reads it as an error).
    ///
    /// # Errors
    /// [`SendError`] with `status` once the stream is dropped.
    ///
    /// # Cancel safety
    /// Cancel safe: if the future is dropped, `status` was not sent.
    pub async fn send_error(self, status: Status) -> Result<(), SendError<Status>> {
        self.tx.send(Err(status)).await.map_err(|e| match e.0 {
            Err(status) => SendError(status),
            Ok(_) => unreachable!("sent an Err value"),
        })
    }

    /// Resolves when the stream is dropped: use it to stop a producer that is not sending.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn closed(&self) {
        self.tx.closed().await;
    }

    /// Whether the stream was dropped.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}
