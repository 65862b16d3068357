//! Compiles `proto/` with protox (pure Rust, no system `protoc`) and writes the encoded file
//! descriptor set that gRPC reflection serves.

use std::path::PathBuf;

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    println!("cargo:rerun-if-changed=third_party");
    let mut files: Vec<PathBuf> =
        std::fs::read_dir("proto/loft/v1")?.map(|e| e.map(|e| e.path())).collect::<Result<_, _>>()?;
    files.retain(|p| p.extension().is_some_and(|e| e == "proto"));
    files.sort();
    // Served by reflection although no Loft message imports them, so that grpcurl and other
    // reflection clients can decode the error details Loft attaches to every failed call.
    files.extend(
        ["third_party/google/rpc/error_details.proto", "third_party/google/rpc/status.proto"].map(PathBuf::from),
    );
    let descriptors = protox::compile(&files, ["proto", "third_party"])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("loft_descriptor.bin"), descriptors.encode_to_vec())?;
    tonic_prost_build::configure().build_server(true).build_client(true).compile_fds(descriptors)?;
    Ok(())
}
