//! `POST /kms/v1/adopt`: the explicit, audited adoption of a key the backend's store holds but
//! kms did not make (`kms migrate vault-transit`). Authorized like `import_key`, on the key id
//! of the body; a dry run unless the body says `commit`.

use http::StatusCode;
use kms_types::adopt::AdoptKeyRequest;
use kms_types::types::validate_key_id;

use super::Call;
use crate::app::{App, check};
use crate::error::ApiError;
use crate::responses::{Resp, json};

impl App {
    pub(crate) async fn adopt_key(&self, call: Call<'_>) -> Result<Resp, ApiError> {
        let request: AdoptKeyRequest = self.body(call.req, false).await?;
        validate_key_id("key_id", &request.key_id)?;
        call.info.key_id = Some(request.key_id.clone());
        check(call.identity, call.operation, Some(&request.key_id))?;
        let svc = self.service().await?;
        let answer = self.call(call.operation, svc.adopt_key(request)).await?;
        Ok(json(StatusCode::OK, &answer))
    }
}
