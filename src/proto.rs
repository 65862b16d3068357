//! The generated `loft.v1` messages, service servers and clients.

#![allow(clippy::all, missing_docs)]

tonic::include_proto!("loft.v1");

/// The encoded descriptors of every proto file, served by reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("loft_descriptor");
