//! The auditor's endpoints (admin): the durable head with its Merkle root and the latest
//! signed checkpoint, and inclusion and consistency proofs (LEDGER.md §10, §11).
//!
//! Everything is read from the ledger's Merkle tree under one read lock, so a head's
//! seq, hash, size and root always describe the same durable record, and no proof is
//! ever about a record that is not durable.

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;
use writ_schemas::Hash;

use super::AppState;
use super::auth::Admin;
use super::error::ApiError;

/// `GET /api/v1/ledger/head`: `{seq, hash, tree_size, root, checkpoint, checkpoint_key}`.
pub(super) async fn head(state: web::Data<AppState>, _: Admin) -> HttpResponse {
    let (seq, hash, root) = state.ledger.merkle(|tree| {
        let size = tree.size();
        (size, tree.last_record_hash(), tree.root(size))
    });
    let root = root.unwrap_or_else(|err| unreachable!("the tree's own size: {err}"));
    let checkpoint = state.checkpoints.latest();
    HttpResponse::Ok().json(json!({
        "seq": seq,
        "hash": hash,
        "tree_size": seq,
        "root": root,
        "checkpoint": checkpoint.as_ref().map(|signed| &signed.note),
        "checkpoint_size": checkpoint.as_ref().map(|signed| signed.checkpoint.tree_size),
        "checkpoint_key": state.checkpoints.key().verifier_key(),
    }))
}

/// `GET /api/v1/ledger/proofs/inclusion?seq=&size=`: record `seq` in the tree of `size`.
pub(super) async fn inclusion(
    state: web::Data<AppState>,
    _: Admin,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let query = Query::parse(&request, &["seq", "size"])?;
    let (seq, size) = (query.number("seq")?, query.number("size")?);
    let answer = state.ledger.merkle(|tree| {
        within_head("size", size, tree.size())?;
        if seq > size {
            return Err(ApiError::invalid(
                "seq",
                format!("record {seq} is not in the tree of {size} records; ask for a seq from 1 to size"),
            ));
        }
        let proof = tree
            .inclusion(seq, size)
            .map_err(|err| ApiError::invalid("seq", err.to_string()))?;
        let root = tree.root(size).map_err(|err| ApiError::invalid("size", err.to_string()))?;
        Ok((proof, root))
    })?;
    let record_hash = state
        .ledger
        .storage()
        .read(seq, 1)
        .ok()
        .and_then(|records| records.first().map(|record| record.hash));
    let (proof, root) = answer;
    Ok(HttpResponse::Ok().json(json!({
        "seq": seq,
        "size": size,
        "leaf_index": seq - 1,
        "record_hash": record_hash,
        "root": root,
        "proof": hexes(&proof),
    })))
}

/// `GET /api/v1/ledger/proofs/consistency?from=&to=`: the tree of `to` records extends the
/// tree of `from`.
pub(super) async fn consistency(
    state: web::Data<AppState>,
    _: Admin,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let query = Query::parse(&request, &["from", "to"])?;
    let (from, to) = (query.number("from")?, query.number("to")?);
    let (proof, from_root, to_root) = state.ledger.merkle(|tree| {
        within_head("to", to, tree.size())?;
        if from > to {
            return Err(ApiError::invalid(
                "from",
                format!("{from} is larger than to ({to}); a consistency proof goes from an older, smaller tree to a newer one"),
            ));
        }
        let proof = tree
            .consistency(from, to)
            .map_err(|err| ApiError::invalid("from", err.to_string()))?;
        let roots = (tree.root(from), tree.root(to));
        match roots {
            (Ok(from_root), Ok(to_root)) => Ok((proof, from_root, to_root)),
            _ => Err(ApiError::invalid("to", "beyond the durable head")),
        }
    })?;
    Ok(HttpResponse::Ok().json(json!({
        "from": from,
        "to": to,
        "from_root": from_root,
        "to_root": to_root,
        "proof": hexes(&proof),
    })))
}

fn hexes(proof: &[Hash]) -> Vec<String> {
    proof.iter().map(Hash::to_hex).collect()
}

/// `value` may be at most the durable head's size.
fn within_head(field: &str, value: u64, tree_size: u64) -> Result<(), ApiError> {
    if value > tree_size {
        return Err(ApiError::invalid(
            field,
            format!(
                "{value} is beyond the ledger's {tree_size} durable records; ask for a size from 1 to {tree_size} (GET /api/v1/ledger/head gives the current one)"
            ),
        ));
    }
    Ok(())
}

/// A query string of named whole numbers, every one required, nothing else allowed.
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(request: &HttpRequest, allowed: &[&str]) -> Result<Query, ApiError> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(request.query_string())
            .map_err(|err| {
                ApiError::invalid("query", format!("not a valid query string: {err}"))
            })?;
        for (name, _) in &pairs {
            if !allowed.contains(&name.as_str()) {
                return Err(ApiError::invalid(
                    name,
                    format!(
                        "unknown parameter; this endpoint takes {}",
                        allowed.join(" and ")
                    ),
                ));
            }
        }
        Ok(Query(pairs))
    }

    /// The parameter `name`: present once, a whole number from 1 up.
    fn number(&self, name: &str) -> Result<u64, ApiError> {
        let mut values = self.0.iter().filter(|(key, _)| key == name);
        let (Some((_, value)), None) = (values.next(), values.next()) else {
            return Err(ApiError::invalid(name, "required, exactly once"));
        };
        match value.parse::<u64>() {
            Ok(0) => Err(ApiError::invalid(
                name,
                "records are numbered from 1, so 0 names none",
            )),
            Ok(number) if number <= writ_schemas::MERKLE_TREE_SIZE_MAX => Ok(number),
            _ => Err(ApiError::invalid(
                name,
                format!("{value:?} is not a whole number from 1 up"),
            )),
        }
    }
}
