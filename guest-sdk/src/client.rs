//! The durable client: start, query and manage orchestrations and entities
//! from HTTP and activity functions.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Serialize, de::DeserializeOwned};

use crate::bindings::perdure::functions::{client as host, types as wit};
use crate::entity::EntityId;
use crate::error::{Error, Result};
use crate::http::{HttpRequest, HttpResponse};

/// Lifecycle of an orchestration instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeStatus {
    Pending,
    Running,
    Completed,
    Failed,
    Terminated,
    Suspended,
    ContinuedAsNew,
}

/// An instance as the status API reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceStatus {
    pub name: String,
    pub instance_id: String,
    pub runtime_status: RuntimeStatus,
    pub input: Option<serde_json::Value>,
    pub output: Option<serde_json::Value>,
    pub custom_status: Option<serde_json::Value>,
    pub created_time: SystemTime,
    pub last_updated_time: SystemTime,
    pub parent_instance_id: Option<String>,
}

fn parse_opt(json: Option<String>) -> Option<serde_json::Value> {
    json.map(|j| serde_json::from_str(&j).unwrap_or(serde_json::Value::String(j)))
}

impl From<wit::InstanceStatus> for InstanceStatus {
    fn from(s: wit::InstanceStatus) -> Self {
        Self {
            name: s.name,
            instance_id: s.instance_id,
            runtime_status: match s.runtime_status {
                wit::RuntimeStatus::Pending => RuntimeStatus::Pending,
                wit::RuntimeStatus::Running => RuntimeStatus::Running,
                wit::RuntimeStatus::Completed => RuntimeStatus::Completed,
                wit::RuntimeStatus::Failed => RuntimeStatus::Failed,
                wit::RuntimeStatus::Terminated => RuntimeStatus::Terminated,
                wit::RuntimeStatus::Suspended => RuntimeStatus::Suspended,
                wit::RuntimeStatus::ContinuedAsNew => RuntimeStatus::ContinuedAsNew,
            },
            input: parse_opt(s.input),
            output: parse_opt(s.output),
            custom_status: parse_opt(s.custom_status),
            created_time: UNIX_EPOCH + Duration::from_millis(s.created_time),
            last_updated_time: UNIX_EPOCH + Duration::from_millis(s.last_updated_time),
            parent_instance_id: s.parent_instance_id,
        }
    }
}

/// Starts and manages orchestrations and entities. Cheap to create.
#[derive(Debug, Clone, Copy, Default)]
pub struct DurableClient;

impl DurableClient {
    pub fn new() -> Self {
        Self
    }

    /// Starts orchestrator `name`; returns the instance id (generated
    /// unless given).
    pub fn start_new(
        &self,
        name: &str,
        instance_id: Option<&str>,
        input: &(impl Serialize + ?Sized),
    ) -> Result<String> {
        let input = serde_json::to_string(input)?;
        Ok(host::start_new(name, instance_id, &input)?)
    }

    /// The instance's status, or `None` if there is no such instance.
    pub fn get_status(&self, instance_id: &str) -> Result<Option<InstanceStatus>> {
        Ok(host::get_status(instance_id)?.map(Into::into))
    }

    /// Delivers an external event to an instance.
    pub fn raise_event(
        &self,
        instance_id: &str,
        event_name: &str,
        data: &(impl Serialize + ?Sized),
    ) -> Result<()> {
        let data = serde_json::to_string(data)?;
        Ok(host::raise_event(instance_id, event_name, &data)?)
    }

    pub fn terminate(&self, instance_id: &str, reason: &str) -> Result<()> {
        Ok(host::terminate(instance_id, reason)?)
    }

    pub fn suspend(&self, instance_id: &str, reason: &str) -> Result<()> {
        Ok(host::suspend(instance_id, reason)?)
    }

    pub fn resume(&self, instance_id: &str, reason: &str) -> Result<()> {
        Ok(host::resume(instance_id, reason)?)
    }

    /// Deletes a finished instance's history; false if there was none.
    pub fn purge(&self, instance_id: &str) -> Result<bool> {
        Ok(host::purge(instance_id)?)
    }

    /// Sends a one-way operation to an entity.
    pub fn signal_entity(
        &self,
        entity: &EntityId,
        operation: &str,
        input: Option<&(impl Serialize + ?Sized)>,
    ) -> Result<()> {
        let input = input.map(serde_json::to_string).transpose()?;
        Ok(host::signal_entity(
            &entity.into(),
            operation,
            input.as_deref(),
        )?)
    }

    /// An entity's state, or `None` if it does not exist.
    pub fn read_entity_state<T: DeserializeOwned>(&self, entity: &EntityId) -> Result<Option<T>> {
        match host::read_entity_state(&entity.into())? {
            Some(json) => Ok(Some(serde_json::from_str(&json).map_err(Error::from)?)),
            None => Ok(None),
        }
    }

    /// The 202 Accepted response pointing at the instance's status and
    /// management URLs.
    pub fn create_check_status_response(
        &self,
        request: &HttpRequest,
        instance_id: &str,
    ) -> HttpResponse {
        host::create_check_status_response(&request.base_url, instance_id).into()
    }

    /// Waits up to `timeout` for the instance: 200 with its output if it
    /// finished, else the check-status response.
    pub fn wait_for_completion_or_create_check_status_response(
        &self,
        request: &HttpRequest,
        instance_id: &str,
        timeout: Duration,
    ) -> HttpResponse {
        let ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        host::wait_for_completion_or_create_check_status_response(
            &request.base_url,
            instance_id,
            ms,
        )
        .into()
    }
}
