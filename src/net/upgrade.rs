//! Takes WebSocket connections over from actix-http after the upgrade.
//!
//! actix-http hands every WebSocket upgrade request, together with its connection, to the
//! upgrade service instead of to the app. The service still routes the request through the app,
//! so the gateway handlers decide as any handler does: an error response, or `101 Switching
//! Protocols` carrying a `Takeover` (what runs the connection). The service writes the response
//! and, for a 101, gives the stream and any bytes the client sent after the request to the
//! takeover. From then on the connection is ours (`connection`): no HTTP dispatcher, its
//! buffers or its body channel sit between the fan-out and the socket.

use actix_codec::{Encoder, Framed};
use actix_http::body::BodySize;
use actix_http::{h1, ConnectionType, Request};
use actix_web::dev::{fn_factory, fn_service, Service, ServiceFactory, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::web::BytesMut;
use actix_web::{body::MessageBody, HttpRequest, HttpResponse};
use futures_util::future::LocalBoxFuture;
use std::future::Future;
use std::rc::Rc;
use tokio::io::AsyncWriteExt;

use crate::net::{TimedStream, Transport};

type Run = Box<dyn FnOnce(Transport, BytesMut) -> LocalBoxFuture<'static, ()>>;

/// What a `101` response hands its connection to: the stream, and the bytes the client sent
/// after the upgrade request.
pub struct Takeover(Run);

/// Answers a WebSocket handshake: `101` handing the connection to `run`, or the handshake's
/// error response (wrong method, missing or bad headers, unsupported version).
pub fn accept<F, Fut>(req: &HttpRequest, run: F) -> HttpResponse
where
    F: FnOnce(Transport, BytesMut) -> Fut + 'static,
    Fut: Future<Output = ()> + 'static,
{
    match actix_http::ws::handshake(req.head()) {
        Ok(mut builder) => {
            let mut response = HttpResponse::from(builder.finish().map_into_boxed_body());
            response
                .extensions_mut()
                .insert(Takeover(Box::new(move |stream, read| {
                    Box::pin(run(stream, read))
                })));
            response
        }
        Err(e) => HttpResponse::from(actix_http::Response::from(e)),
    }
}

/// The upgrade service for actix-http: routes each upgrade request through `app` and runs the
/// takeover of a `101` answer.
pub fn service<F, B>(
    app: F,
) -> impl ServiceFactory<
    (Request, Framed<TimedStream, h1::Codec>),
    Config = (),
    Response = (),
    Error = actix_web::Error,
    InitError = (),
>
where
    F: ServiceFactory<
            Request,
            Config = (),
            Response = ServiceResponse<B>,
            Error = actix_web::Error,
            InitError = (),
        > + 'static,
    B: MessageBody + 'static,
{
    fn_factory(move || {
        let app = app.new_service(());
        async move {
            let app = Rc::new(app.await?);
            Ok(fn_service(
                move |(req, framed): (Request, Framed<TimedStream, h1::Codec>)| {
                    take_over(app.clone(), req, framed)
                },
            ))
        }
    })
}

async fn take_over<S, B>(
    app: Rc<S>,
    req: Request,
    framed: Framed<TimedStream, h1::Codec>,
) -> Result<(), actix_web::Error>
where
    S: Service<Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody + 'static,
{
    let response = match app.call(req).await {
        Ok(response) => response.into_parts().1.map_into_boxed_body(),
        Err(e) => e.error_response(),
    };
    let mut response = actix_http::Response::from(response);
    let takeover = if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        response.extensions_mut().remove::<Takeover>()
    } else {
        None
    };
    let (mut head, body) = response.into_parts();
    let mut parts = framed.into_parts();
    // Anything the HTTP layer had not flushed yet (a pipelined earlier response) goes first.
    let mut out = std::mem::take(&mut parts.write_buf);
    match &takeover {
        Some(_) => parts
            .codec
            .encode(h1::Message::Item((head, BodySize::None)), &mut out)?,
        None => {
            // A refused upgrade: the answer, then the connection ends.
            let body = actix_web::body::to_bytes(body).await.unwrap_or_default();
            head.head_mut().set_connection_type(ConnectionType::Close);
            let size = BodySize::Sized(body.len() as u64);
            parts
                .codec
                .encode(h1::Message::Item((head, size)), &mut out)?;
            parts
                .codec
                .encode(h1::Message::Chunk(Some(body)), &mut out)?;
        }
    }
    let mut stream = parts.io;
    stream.write_all(&out).await?;
    // With TLS, the records of the answer leave the session before it changes hands.
    stream.flush().await?;
    let stream = stream.into_inner();
    if let Some(Takeover(run)) = takeover {
        // Keep only the bytes already received, not the HTTP layer's read buffer.
        let read = BytesMut::from(&parts.read_buf[..]);
        drop(parts.read_buf);
        run(stream, read).await;
    }
    Ok(())
}
