//! The gRPC test application backend ([`spindle_tests::grpc_backend`]) as a process, for the
//! SDK suites: prints `listening <host:port>` and serves Centrifugo's proxy service (subscription
//! streams included) until it is killed.

use spindle_tests::grpc_backend::GrpcBackend;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let backend = match GrpcBackend::start().await {
        Ok(backend) => backend,
        Err(error) => {
            eprintln!("spindle-grpc-test-backend: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    println!("listening {}", backend.endpoint());
    std::future::pending::<()>().await;
    std::process::ExitCode::SUCCESS
}
