//! The Deploy and Quantize uploads: a `DeploySpec`, then the model's and the
//! declared attachments' chunks, each written to its own temp blob (hashed
//! as it arrives) so nothing of the upload is held in memory.
//!
//! Owns the stream's framing and the size limit while bytes arrive; whether
//! the staged bytes match the spec, and everything after, is the deployer's.
//! Never commits a blob or writes the journal.

use dsmil_proto::control as pb;
use tonic::Streaming;

use super::convert;
use super::error::ControlError;
use crate::deploy::{DeployError, DeployRequest, Deployer, Staged};
use crate::store::{BlobStore, StagedBlob, Upload};

/// The upload's first message, refused at once if it declares more than
/// `deployment.max_model_size_mb`.
pub async fn read_spec(
    deployer: &Deployer,
    inbound: &mut Streaming<pb::DeployRequest>,
) -> Result<pb::DeploySpec, ControlError> {
    let spec = match inbound.message().await.map_err(ControlError::Stream)? {
        Some(pb::DeployRequest {
            part: Some(pb::deploy_request::Part::Spec(spec)),
        }) => spec,
        _ => return Err(DeployError::MissingSpec.into()),
    };
    let limit = deployer.config().deployment.max_model_bytes;
    if spec.size_bytes > limit {
        return Err(DeployError::TooLarge { limit_mb: limit >> 20 }.into());
    }
    Ok(spec)
}

/// The rest of the upload, staged; with the spec it declared.
pub async fn receive(
    deployer: &Deployer,
    inbound: &mut Streaming<pb::DeployRequest>,
    spec: pb::DeploySpec,
) -> Result<(DeployRequest, Staged), ControlError> {
    let limit = deployer.config().deployment.max_model_bytes;
    let blobs = deployer.blobs();
    let mut model = blobs.begin_upload().await?;
    let mut weights = begin(blobs, spec.weights.is_some()).await?;
    let mut calibration = begin(blobs, spec.calibration.is_some()).await?;
    let mut validation = begin(blobs, spec.validation.is_some()).await?;
    while let Some(message) = inbound.message().await.map_err(ControlError::Stream)? {
        use pb::deploy_request::Part;
        let (upload, chunk) = match message.part {
            Some(Part::Chunk(chunk)) => (Some(&mut model), chunk),
            Some(Part::CalibrationChunk(chunk)) => (calibration.as_mut(), chunk),
            Some(Part::ValidationChunk(chunk)) => (validation.as_mut(), chunk),
            Some(Part::WeightsChunk(chunk)) => (weights.as_mut(), chunk),
            Some(Part::Spec(_)) | None => return Err(ControlError::SpecNotFirst),
        };
        let upload = upload.ok_or(ControlError::UndeclaredChunk)?;
        if upload.size() + chunk.len() as u64 > limit {
            return Err(DeployError::TooLarge { limit_mb: limit >> 20 }.into());
        }
        upload.write(&chunk).await?;
    }
    let staged = Staged {
        model: model.finish().await?,
        weights: finish(weights).await?,
        calibration: finish(calibration).await?,
        validation: finish(validation).await?,
    };
    Ok((convert::deploy_request(spec)?, staged))
}

/// A temp blob for an attachment, if the spec declared it.
async fn begin(blobs: &BlobStore, declared: bool) -> Result<Option<Upload>, ControlError> {
    Ok(if declared {
        Some(blobs.begin_upload().await?)
    } else {
        None
    })
}

async fn finish(upload: Option<Upload>) -> Result<Option<StagedBlob>, ControlError> {
    match upload {
        Some(u) => Ok(Some(u.finish().await?)),
        None => Ok(None),
    }
}
