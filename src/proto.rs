//! The wire contract (`proto/projection.proto`) as generated Rust, plus the two helpers every
//! stage needs around `google.protobuf.Any`: resolving an operation's message name from its
//! type URL (which comes in more than one spelling) and packing a message.

#[allow(clippy::all, missing_docs)]
mod generated {
    tonic::include_proto!("projection");
}

pub use generated::*;
use prost::Message;
use prost_types::Any;

/// Prefix most gRPC libraries use for `Any` type URLs.
pub const TYPE_URL_PREFIX: &str = "type.googleapis.com/";

/// The full message name an `Any` carries: the part of the type URL after the last `/`, so that
/// `type.googleapis.com/projection.Execute`, `/projection.Execute` and `projection.Execute`
/// all resolve to `projection.Execute`.
pub fn message_name(any: &Any) -> &str {
    any.type_url.rsplit('/').next().unwrap_or_default()
}

/// Packs a message into an `Any` under `type.googleapis.com/<full_name>`.
pub fn pack<M: Message>(full_name: &str, message: &M) -> Any {
    Any {
        type_url: format!("{TYPE_URL_PREFIX}{full_name}"),
        value: message.encode_to_vec(),
    }
}

/// Full message names of the operations the gateway understands.
pub mod names {
    pub const IGNORE: &str = "projection.Ignore";
    pub const EXECUTE: &str = "projection.Execute";
    pub const STATEMENT: &str = "projection.Statement";
    pub const INSERT_ONE: &str = "projection.InsertOne";
    pub const INSERT_MANY: &str = "projection.InsertMany";
    pub const UPDATE_ONE: &str = "projection.UpdateOne";
    pub const UPDATE_MANY: &str = "projection.UpdateMany";
    pub const REPLACE_ONE: &str = "projection.ReplaceOne";
    pub const DELETE_ONE: &str = "projection.DeleteOne";
    pub const DELETE_MANY: &str = "projection.DeleteMany";
}

impl ProjectionResponse {
    /// Every operation of the response, in the order they must be applied: `operation` first,
    /// then `operations`.
    pub fn all_operations(&self) -> impl Iterator<Item = &Any> {
        self.operation.iter().chain(self.operations.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_every_type_url_spelling() {
        for url in [
            "type.googleapis.com/projection.Execute",
            "/projection.Execute",
            "projection.Execute",
        ] {
            let any = Any { type_url: url.into(), value: vec![] };
            assert_eq!(message_name(&any), names::EXECUTE, "{url}");
        }
    }

    #[test]
    fn operation_comes_before_operations() {
        let response = ProjectionResponse {
            operation: Some(pack(names::IGNORE, &Ignore {})),
            operations: vec![pack(names::EXECUTE, &Execute { sql: "x".into() })],
            ..Default::default()
        };
        let names: Vec<_> = response.all_operations().map(message_name).collect();
        assert_eq!(names, [names::IGNORE, names::EXECUTE]);
    }
}
