//! The JSON shapes of the etcd gateway.
//!
//! The gateway marshals protobuf with the original field names, omits zero values, encodes bytes as
//! base64 and 64-bit integers as strings. Every field is therefore optional here and integers go
//! through [`int`], which accepts both strings and numbers.

use serde::{Deserialize, Deserializer, Serialize};

/// Accepts a 64-bit integer written as a JSON string or number.
pub mod int {
    use super::*;

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Text(String),
        Number(u64),
        Signed(i64),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(de: D) -> Result<u64, D::Error> {
        match Either::deserialize(de)? {
            Either::Number(n) => Ok(n),
            Either::Signed(n) => u64::try_from(n).map_err(serde::de::Error::custom),
            Either::Text(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }

    /// Writes integers as strings, as the gateway expects for 64-bit fields.
    pub fn serialize<S: serde::Serializer>(value: &u64, ser: S) -> Result<S::Ok, S::Error> {
        ser.serialize_str(&value.to_string())
    }
}

#[derive(Debug, Serialize)]
pub struct RangeRequest {
    pub key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub range_end: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RangeResponse {
    #[serde(default)]
    pub kvs: Vec<RawKeyValue>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawKeyValue {
    #[serde(default)]
    pub key: String,
    #[serde(default)]
    pub value: String,
    #[serde(default, with = "int")]
    pub create_revision: u64,
    #[serde(default, with = "int")]
    pub mod_revision: u64,
    #[serde(default, with = "int")]
    pub version: u64,
    #[serde(default, with = "int")]
    pub lease: u64,
}

#[derive(Debug, Serialize)]
pub struct PutRequest {
    pub key: String,
    pub value: String,
    #[serde(with = "int")]
    pub lease: u64,
}

#[derive(Debug, Default, Deserialize)]
pub struct DeleteRangeResponse {
    #[serde(default, with = "int")]
    pub deleted: u64,
}

#[derive(Debug, Serialize)]
pub struct TxnRequest {
    pub compare: Vec<Compare>,
    pub success: Vec<RequestOp>,
}

#[derive(Debug, Serialize)]
pub struct Compare {
    pub key: String,
    pub target: &'static str,
    pub result: &'static str,
    #[serde(skip_serializing_if = "Option::is_none", with = "opt_int")]
    pub create_revision: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none", with = "opt_int")]
    pub mod_revision: Option<u64>,
}

/// Optional 64-bit integers, written as strings when present.
mod opt_int {
    pub fn serialize<S: serde::Serializer>(value: &Option<u64>, ser: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(v) => super::int::serialize(v, ser),
            None => ser.serialize_none(),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct RequestOp {
    pub request_put: PutRequest,
}

#[derive(Debug, Default, Deserialize)]
pub struct TxnResponse {
    #[serde(default)]
    pub succeeded: bool,
}

#[derive(Debug, Serialize)]
pub struct LeaseGrantRequest {
    #[serde(rename = "TTL", with = "int")]
    pub ttl: u64,
}

#[derive(Debug, Default, Deserialize)]
pub struct LeaseGrantResponse {
    #[serde(rename = "ID", default, with = "int")]
    pub id: u64,
    #[serde(rename = "TTL", default, with = "int")]
    pub ttl: u64,
    #[serde(default)]
    pub error: String,
}

#[derive(Debug, Serialize)]
pub struct IdRequest {
    #[serde(rename = "ID", with = "int")]
    pub id: u64,
}

#[derive(Debug, Serialize)]
pub struct MemberAddRequest {
    #[serde(rename = "peerURLs")]
    pub peer_urls: Vec<String>,
    #[serde(rename = "isLearner")]
    pub is_learner: bool,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawMember {
    #[serde(rename = "ID", default, with = "int")]
    pub id: u64,
    #[serde(default)]
    pub name: String,
    #[serde(rename = "peerURLs", default)]
    pub peer_urls: Vec<String>,
    #[serde(rename = "clientURLs", default)]
    pub client_urls: Vec<String>,
    #[serde(rename = "isLearner", default)]
    pub is_learner: bool,
}

#[derive(Debug, Default, Deserialize)]
pub struct MembersResponse {
    #[serde(default)]
    pub member: Option<RawMember>,
    #[serde(default)]
    pub members: Vec<RawMember>,
}

#[derive(Debug, Default, Deserialize)]
pub struct ResponseHeader {
    #[serde(default, with = "int")]
    pub member_id: u64,
    #[serde(default, with = "int")]
    pub cluster_id: u64,
}

#[derive(Debug, Default, Deserialize)]
pub struct StatusResponse {
    #[serde(default)]
    pub header: ResponseHeader,
    #[serde(default)]
    pub version: String,
    #[serde(rename = "dbSize", alias = "db_size", default, with = "int")]
    pub db_size: u64,
    #[serde(default, with = "int")]
    pub leader: u64,
    #[serde(rename = "raftIndex", alias = "raft_index", default, with = "int")]
    pub raft_index: u64,
    #[serde(rename = "raftTerm", alias = "raft_term", default, with = "int")]
    pub raft_term: u64,
    #[serde(rename = "isLearner", alias = "is_learner", default)]
    pub is_learner: bool,
    #[serde(default)]
    pub errors: Vec<String>,
}

/// The error body of the gateway (`error` in 3.4, `message` in later versions).
#[derive(Debug, Default, Deserialize)]
pub struct ErrorBody {
    #[serde(default)]
    pub error: String,
    #[serde(default)]
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_accept_strings_and_numbers() {
        let kv: RawKeyValue =
            serde_json::from_str(r#"{"key":"YQ==","create_revision":"12","lease":7}"#).unwrap();
        assert_eq!((kv.create_revision, kv.lease, kv.version), (12, 7, 0));
    }

    #[test]
    fn large_member_ids_round_trip_as_strings() {
        let json = serde_json::to_string(&IdRequest {
            id: 0xfedc_ba98_7654_3210,
        })
        .unwrap();
        assert_eq!(json, r#"{"ID":"18364758544493064720"}"#);
        let member: RawMember =
            serde_json::from_str(r#"{"ID":"18364758544493064720","isLearner":true}"#).unwrap();
        assert_eq!(member.id, 0xfedc_ba98_7654_3210);
        assert!(member.is_learner);
    }
}
