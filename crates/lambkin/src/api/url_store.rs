//! Function URLs as the host keeps them: `ROOT/state/function-urls.json` (written whole,
//! atomically, 0600), one per function, found by function or by URL id. A leaf: the state,
//! the URL configuration handlers and the URL requests all read it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use lambkin_proto::lambda::error::ApiError;
use lambkin_proto::lambda::url::{UrlConfig, PATH_PREFIX};

/// One function's URL, as kept.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FunctionUrl {
    pub function: String,
    /// 32 lowercase letters and digits, as AWS's.
    pub url_id: String,
    pub config: UrlConfig,
}

/// Every function's URL.
#[derive(Debug)]
pub struct FunctionUrls {
    path: PathBuf,
    /// `http://ADDR`, the API listener: URLs' path form lives under it.
    endpoint: String,
    urls: Mutex<BTreeMap<String, FunctionUrl>>,
}

impl FunctionUrls {
    /// Loads what `state/function-urls.json` holds (nothing when it does not exist).
    pub fn load(state_dir: &std::path::Path, endpoint: String) -> std::io::Result<Self> {
        let path = state_dir.join("function-urls.json");
        let urls: Vec<FunctionUrl> = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(std::io::Error::other)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        let mut store = Self {
            path,
            endpoint,
            urls: Mutex::new(BTreeMap::new()),
        };
        // The listener's address may have changed since (`--listen`): URLs name the current one.
        let urls = urls
            .into_iter()
            .map(|mut u| {
                u.config.function_url = store.function_url(&u.url_id);
                (u.function.clone(), u)
            })
            .collect();
        store.urls = Mutex::new(urls);
        Ok(store)
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, FunctionUrl>> {
        self.urls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(super) fn save(&self, urls: &BTreeMap<String, FunctionUrl>) -> Result<(), ApiError> {
        let all: Vec<&FunctionUrl> = urls.values().collect();
        let bytes =
            serde_json::to_vec_pretty(&all).map_err(|e| ApiError::Service(e.to_string()))?;
        crate::layout::write_private(&self.path, &bytes)
            .map_err(|e| ApiError::Service(format!("cannot save {}: {e}", self.path.display())))
    }

    /// The URL whose id is `url_id`.
    pub fn by_id(&self, url_id: &str) -> Option<FunctionUrl> {
        self.lock().values().find(|u| u.url_id == url_id).cloned()
    }

    /// Forgets a deleted function's URL.
    pub fn function_deleted(&self, function: &str) {
        let mut urls = self.lock();
        if urls.remove(function).is_some() {
            if let Err(e) = self.save(&urls) {
                tracing::warn!(function, error = %e, "the deleted function's URL is still on disk");
            }
        }
    }

    /// The path form: `http://ADDR/lambda-url/URLID/`.
    pub(super) fn function_url(&self, url_id: &str) -> String {
        format!("{}/{PATH_PREFIX}/{url_id}/", self.endpoint)
    }
}
