//! The writer task of a socket-mode WebSocket: writes what the outbox could not write at once
//! (the socket was full, or several messages queued meanwhile) within
//! `websocket.write_timeout`, and the close frame at the end.

use crate::writer::{CLOSE_WAIT, Outbox, SocketNext};
use spindle_hub::codes::Disconnect;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::tcp::OwnedWriteHalf;

/// Runs until the connection closes; returns once the close frame is written (or could not
/// be).
pub(crate) async fn run_socket_writer(outbox: Arc<Outbox>, write_timeout: Duration) {
    let Some(socket) = outbox.socket() else {
        return;
    };
    loop {
        match outbox.next_socket().await {
            SocketNext::Write(bytes) => {
                let written = write_all(socket, &bytes, write_timeout).await;
                outbox.written();
                if !written {
                    outbox.close(Disconnect::WRITE_ERROR);
                    return;
                }
            }
            SocketNext::Close(disconnect, owed) => {
                let code = disconnect.code;
                if code == Disconnect::WRITE_ERROR.code {
                    return;
                }
                let mut out = owed.to_vec();
                // After the client's close only its echo (owed) goes out.
                if code != Disconnect::CONNECTION_CLOSED.code {
                    out.extend_from_slice(&spindle_proto::websocket::close_frame(
                        u16::try_from(code).unwrap_or(3000),
                        &disconnect.reason,
                    ));
                }
                write_all(socket, &out, CLOSE_WAIT).await;
                return;
            }
        }
    }
}

/// Writes all of `bytes` within `limit`. The first attempt needs no timer: most writes
/// complete at once.
async fn write_all(socket: &OwnedWriteHalf, mut bytes: &[u8], limit: Duration) -> bool {
    match socket.try_write(bytes) {
        Ok(n) if n == bytes.len() => return true,
        Ok(n) => bytes = &bytes[n..],
        Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
        Err(_) => return false,
    }
    let rest = async {
        while !bytes.is_empty() {
            socket.writable().await?;
            match socket.try_write(bytes) {
                Ok(n) => bytes = &bytes[n..],
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(error) => return Err(error),
            }
        }
        Ok::<_, std::io::Error>(())
    };
    matches!(tokio::time::timeout(limit, rest).await, Ok(Ok(())))
}
