//! Compiles `xunjian/v1/xunjian.proto` with protox (pure Rust), so a build
//! needs no system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "xunjian/v1/xunjian.proto";
    println!("cargo:rerun-if-changed={proto}");
    let fds = protox::compile([proto], ["."])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Serialize lets the agent print a report as JSON (`check --json`) and
        // the collector store inventory snapshots as queryable JSON.
        .type_attribute(".xunjian.v1", "#[derive(serde::Serialize)]")
        // Small starting buffers: see src/codec.rs.
        .codec_path("crate::codec::CompactCodec")
        .compile_fds(fds)?;
    Ok(())
}
