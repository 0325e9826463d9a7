//! The edge's end of a QUIC link: dial a core, exchange `Hello`, then relay between the
//! in-process link the edge holds and the QUIC streams (see the module above).

use super::framed::{self, FrameReader};
use super::{HelloError, LastHeard, MeshOptions, close, tls};
use crate::link::{
    CoreInbox, CoreLink, Down, EdgeInbox, EdgeLink, SharedEvent, Up, in_process_with_lanes,
};
use crate::{Pending, mesh};
use spindle_proto::mesh::{Role, mesh_frame::Kind};
use std::net::SocketAddr;
use std::sync::Arc;
use thiserror::Error;
use tokio::sync::mpsc;

/// How long a core may take to answer the edge's `Hello` with its own.
const HELLO_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Why a core could not be reached.
#[derive(Debug, Error)]
pub enum DialError {
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("QUIC cannot use this TLS configuration: {0}")]
    Quic(#[from] quinn::crypto::rustls::NoInitialCipherSuite),
    #[error("cannot open a UDP socket: {0}")]
    Socket(std::io::Error),
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        source: quinn::ConnectError,
    },
    #[error("connection to {addr} failed: {source}")]
    Connection {
        addr: SocketAddr,
        source: quinn::ConnectionError,
    },
    #[error("{addr} refused: {source}")]
    Refused {
        addr: SocketAddr,
        source: HelloError,
    },
}

/// Who the edge is linked to.
#[derive(Debug, Clone)]
pub struct CoreLinkInfo {
    /// The core's node name (its certificate names it).
    pub node: String,
    pub region: String,
    /// Closes once the link is down.
    pub connection: quinn::Connection,
}

/// Connects to the core at `addr` as the node `options.node_name` and starts relaying. The
/// returned ends behave as an in-process link; they close when the QUIC connection is lost
/// (no frame within the link timeout, the core gone or refusing).
pub async fn dial(
    addr: SocketAddr,
    identity: &tls::MeshIdentity,
    options: MeshOptions,
) -> Result<((EdgeLink, EdgeInbox), CoreLinkInfo), DialError> {
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls::client_config(identity)?)?;
    let mut client = quinn::ClientConfig::new(Arc::new(crypto));
    client.transport_config(Arc::new(super::transport(&options)));
    let bind: SocketAddr = if addr.is_ipv6() {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    };
    let endpoint = quinn::Endpoint::client(bind).map_err(DialError::Socket)?;
    let connection = endpoint
        .connect_with(client, addr, tls::DIAL_NAME)
        .map_err(|source| DialError::Connect { addr, source })?
        .await
        .map_err(|source| DialError::Connection { addr, source })?;
    let connected = |source| DialError::Connection { addr, source };
    let (mut send, recv) = connection.open_bi().await.map_err(connected)?;
    send.write_all(&framed::frame(super::hello(&options, Role::Edge)))
        .await
        .map_err(|_| DialError::Refused {
            addr,
            source: HelloError::Missing,
        })?;
    let mut reader = FrameReader::new(recv);
    let hello = tokio::time::timeout(
        HELLO_TIMEOUT,
        super::check_hello(&mut reader, &connection, Role::Core),
    )
    .await
    .unwrap_or(Err(HelloError::Missing));
    let hello = match hello {
        Ok(hello) => hello,
        Err(source) => {
            tracing::warn!(%addr, %source, "mesh: core refused");
            super::refuse(&mut send, &connection, &source).await;
            return Err(DialError::Refused { addr, source });
        }
    };
    tracing::info!(%addr, core = hello.node_id, region = hello.region, "mesh link up");

    let (edge_end, (to_edge, from_edge)) = in_process_with_lanes(options.capacity, options.lanes);
    let (control, control_queue) = mpsc::channel(1024);
    let heard = LastHeard::new();
    tokio::spawn(framed::write_frames(send, control_queue));
    tokio::spawn(super::keep_alive(
        control.clone(),
        connection.clone(),
        heard.clone(),
        options.clone(),
        hello.node_id.clone(),
    ));
    tokio::spawn(up(from_edge, control, connection.clone(), endpoint));
    tokio::spawn(control_down(
        reader,
        to_edge.clone(),
        heard,
        connection.clone(),
    ));
    tokio::spawn(surveys(connection.clone(), to_edge.clone()));
    tokio::spawn(lanes(connection.clone(), to_edge));
    let info = CoreLinkInfo {
        node: hello.node_id,
        region: hello.region,
        connection,
    };
    Ok((edge_end, info))
}

/// What the edge sends: control messages in order on the control stream, each request on a
/// stream of its own. Ends when the connection closes (the endpoint lives as long as this).
async fn up(
    from_edge: CoreInbox,
    control: mpsc::Sender<bytes::Bytes>,
    connection: quinn::Connection,
    _endpoint: quinn::Endpoint,
) {
    let route = |message, connection: &quinn::Connection| match message {
        Up::Interest(interest) => Some(framed::frame(Kind::Interest(interest))),
        Up::Presence(update) => Some(framed::frame(Kind::Presence(update))),
        Up::Request(pending) => {
            tokio::spawn(request(connection.clone(), pending));
            None
        }
    };
    super::relay_out(from_edge, control, connection, b"edge stopped", route).await;
}

/// One request on its own stream; abandoned (the stream reset) when the edge gives up.
async fn request(connection: quinn::Connection, pending: Pending<mesh::Request, mesh::Response>) {
    let id = pending.question.id;
    let pick = |kind| match kind {
        Kind::Response(mut response) => {
            // The id is this link's, as the edge numbered it.
            response.id = id;
            Some(response)
        }
        _ => None,
    };
    super::ask(
        &connection,
        Kind::Request(pending.question),
        pending.responder,
        pick,
    )
    .await;
}

/// The core's control stream: commands and interest acks to the edge.
async fn control_down(
    reader: FrameReader,
    to_edge: CoreLink,
    heard: LastHeard,
    connection: quinn::Connection,
) {
    let accept = |kind| match kind {
        Kind::Control(control) => Some(Down::Control(control)),
        Kind::InterestAck(ack) => Some(Down::InterestAck(ack)),
        _ => None,
    };
    let forward = |message| {
        let to_edge = to_edge.clone();
        async move { to_edge.send(message).await.is_ok() }
    };
    super::read_control(reader, heard, connection, "core", accept, forward).await;
}

/// Surveys the core opens, each on its own stream, answered by the edge.
async fn surveys(connection: quinn::Connection, to_edge: CoreLink) {
    while let Ok((mut send, recv)) = connection.accept_bi().await {
        let to_edge = to_edge.clone();
        tokio::spawn(async move {
            let mut reader = FrameReader::new(recv);
            let Ok(Some(Kind::Survey(survey))) = reader.next().await else {
                return;
            };
            if let Ok(reply) = to_edge.survey(survey).await {
                let _ = framed::send_one(&mut send, Kind::SurveyReply(reply)).await;
            }
        });
    }
}

/// The core's event lanes, each read by its own task into the edge's matching lane.
async fn lanes(connection: quinn::Connection, to_edge: CoreLink) {
    while let Ok(recv) = connection.accept_uni().await {
        let to_edge = to_edge.clone();
        let connection = connection.clone();
        tokio::spawn(async move {
            let mut reader = FrameReader::new(recv);
            loop {
                match reader.next().await {
                    Ok(Some(Kind::Event(event))) => {
                        // Waits while the edge's lane is full: QUIC flow control then holds
                        // the core, whose own lane fills and drops for this edge alone.
                        if to_edge.send_event(SharedEvent::new(event)).await.is_err() {
                            return;
                        }
                    }
                    Ok(None) => return,
                    Ok(Some(_)) | Err(_) => {
                        connection.close(close::PROTOCOL, b"bad frame on a lane");
                        return;
                    }
                }
            }
        });
    }
}
