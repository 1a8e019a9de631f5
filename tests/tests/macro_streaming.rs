//! `Streaming<T>` arguments and results: server, client and bidirectional streams,
//! cancellation, panics inside a stream.

mod macro_common;

use std::time::{Duration, Instant};

use intercom::Streaming;
use intercom::tonic::Code;
use intercom_tests::macro_api::Echo as _;

/// The plugin process ends while a server stream is running: the stream ends with an
/// error that says the plugin exited, not a bare transport error.
#[tokio::test]
async fn a_stream_cut_short_by_the_plugin_exiting_says_it_exited() {
    let (client, echo) = macro_common::launch().await;
    let mut values = echo.count().await.unwrap();
    assert_eq!(values.message().await.unwrap(), Some(0));
    let exiting = tokio::spawn({
        let echo = echo.clone();
        async move { echo.exit(5).await }
    });
    let status = tokio::time::timeout(macro_common::DEADLINE, async {
        loop {
            match values.message().await {
                Ok(Some(_)) => {}
                Ok(None) => panic!("the endless stream ended without an error"),
                Err(status) => break status,
            }
        }
    })
    .await
    .expect("the stream must end when the plugin exits");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(
        status
            .message()
            .contains("plugin `macro-plugin` exited (exit status 5)"),
        "{status:?}"
    );
    assert!(exiting.await.unwrap().is_err());
    client.kill().await;
}

#[tokio::test]
async fn dropping_a_stream_frees_the_producer() {
    macro_common::with_plugin(|echo| async move {
        let mut values = echo.count().await.unwrap();
        for expected in 0..100u64 {
            assert_eq!(values.message().await.unwrap(), Some(expected));
        }
        assert_eq!(echo.producers().await.unwrap(), 1);
        drop(values);
        // The cancellation reaches the plugin, its stream is dropped, `send` fails and
        // the producer task ends.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let running = echo.producers().await.unwrap();
            if running == 0 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{running} producer(s) still running"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Many cancelled streams leave nothing behind either.
        for _ in 0..20 {
            let mut values = echo.count().await.unwrap();
            values.message().await.unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while echo.producers().await.unwrap() != 0 {
            assert!(Instant::now() < deadline, "producers leaked");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn a_slow_reader_holds_the_producer_back() {
    macro_common::with_plugin(|echo| async move {
        let mut pages = echo.pages(1024).await.unwrap();
        assert_eq!(pages.message().await.unwrap().map(|p| p.len()), Some(1024));
        // While nobody reads, the producer fills the channel and the HTTP/2 windows, then
        // waits in `send`: the count of sent pages stops growing (unbounded, it would grow
        // until memory ran out).
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut last = echo.produced().await.unwrap();
        let stalled = loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let now = echo.produced().await.unwrap();
            if now == last {
                break now;
            }
            assert!(
                Instant::now() < deadline,
                "the producer never stalled ({now} pages)"
            );
            last = now;
        };
        // What is in flight is bounded by the channel, the HTTP/2 stream and connection
        // windows and the socket/yamux buffers: a few MiB at most (about 2 MiB here).
        assert!(
            stalled < 10_000,
            "the producer ran far ahead: {stalled} pages"
        );
        // Reading resumes it, and nothing was lost or reordered.
        for n in 1..=stalled + 10 {
            let page = pages.message().await.unwrap().expect("the stream goes on");
            assert_eq!(page, vec![(n % 251) as u8; 1024]);
        }
        assert!(echo.produced().await.unwrap() > stalled);
    })
    .await;
}

#[tokio::test]
async fn client_streaming_sums_and_errors_abort() {
    macro_common::with_plugin(|echo| async move {
        assert_eq!(echo.sum(Streaming::from_iter(1..=100)).await.unwrap(), 5050);
        assert_eq!(echo.sum(Streaming::empty()).await.unwrap(), 0);
        let (tx, values) = Streaming::channel(1);
        let producer = tokio::spawn(async move {
            for v in 0..10 {
                tx.send(v).await.unwrap();
            }
        });
        assert_eq!(echo.sum(values).await.unwrap(), 45);
        producer.await.unwrap();

        let failing = Streaming::new(futures::stream::iter([
            Ok(1),
            Err(intercom::Status::aborted("the source broke")),
            Ok(2),
        ]));
        let status = echo.sum(failing).await.unwrap_err();
        assert_eq!(status.code(), Code::Aborted);
        assert_eq!(status.message(), "the source broke");
    })
    .await;
}

#[tokio::test]
async fn bidirectional_streams_answer_as_they_go() {
    macro_common::with_plugin(|echo| async move {
        let (tx, lines) = Streaming::channel(1);
        let mut shouted = echo.shout(lines).await.unwrap();
        for word in ["hello", "plugin", "world"] {
            tx.send(word.to_owned()).await.unwrap();
            assert_eq!(shouted.message().await.unwrap(), Some(word.to_uppercase()));
        }
        drop(tx);
        assert_eq!(shouted.message().await.unwrap(), None);
    })
    .await;
}

#[tokio::test]
async fn a_panic_inside_a_stream_ends_it_with_internal() {
    macro_common::with_plugin(|echo| async move {
        let mut values = echo.panic_in_stream().await.unwrap();
        assert_eq!(values.message().await.unwrap(), Some(1));
        let status = values.message().await.unwrap_err();
        assert_eq!(status.code(), Code::Internal, "{status:?}");
        assert!(status.message().contains("panicked"), "{status:?}");
        assert_eq!(echo.slow_square(2, 0).await.unwrap(), 4);
    })
    .await;
}

#[tokio::test]
async fn a_message_over_4_mib_reaches_the_host_as_under_go_plugin() {
    // go-plugin's host accepts up to math.MaxInt32 bytes; tonic's default stops at 4 MiB.
    const BIG: u32 = 5 << 20;
    macro_common::with_plugin(|echo| async move {
        let mut pages = echo.pages(BIG).await.unwrap();
        let page = pages.message().await.expect("a 5 MiB page");
        assert_eq!(page.map(|p| p.len()), Some(BIG as usize));
    })
    .await;
}
