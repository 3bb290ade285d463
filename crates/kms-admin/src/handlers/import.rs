//! Import of key material (BYOK, `docs/byok.md`): parameters, import, deletion of the material.

use http::StatusCode;
use kms_types::byok::{DeleteImportedKeyMaterialRequest, ImportMaterialBody, ImportParametersBody};

use super::Call;
use crate::api::EmptyBody;
use crate::app::App;
use crate::error::ApiError;
use crate::responses::{Resp, json};

impl App {
    /// `POST /kms/v1/keys/{key_id}/import-parameters`: a one-time wrapping key and token.
    pub(crate) async fn get_parameters_for_import(&self, call: Call<'_>) -> Result<Resp, ApiError> {
        let body: ImportParametersBody = self.body(call.req, false).await?;
        let svc = self.service().await?;
        let request = body.into_request(call.key);
        Ok(json(StatusCode::OK, &self.call(call.operation, svc.get_parameters_for_import(request)).await?))
    }

    /// `POST /kms/v1/keys/{key_id}/import-material`: wrapped material and its token.
    pub(crate) async fn import_key_material(&self, call: Call<'_>) -> Result<Resp, ApiError> {
        let body: ImportMaterialBody = self.body(call.req, true).await?;
        let svc = self.service().await?;
        let request = body.into_request(call.key);
        Ok(json(StatusCode::OK, &self.call(call.operation, svc.import_key_material(request)).await?))
    }

    /// `DELETE /kms/v1/keys/{key_id}/import-material`: the key returns to `PendingImport`.
    pub(crate) async fn delete_imported_key_material(&self, call: Call<'_>) -> Result<Resp, ApiError> {
        let _: EmptyBody = self.body(call.req, false).await?;
        let svc = self.service().await?;
        let request = DeleteImportedKeyMaterialRequest { key_id: call.key };
        Ok(json(StatusCode::OK, &self.call(call.operation, svc.delete_imported_key_material(request)).await?))
    }
}
