//! The categories every node keeps in memory, so that checking a send's
//! category costs no database read: loaded at start, reloaded after a
//! change through this node, when a send names one this node does not know
//! (another node may have just created it), and at least every
//! [`REFRESH`] (a category deleted through another node is refused here
//! within that time).

use crate::error::{ApiError, ApiResult};
use belfry_core::{Category, CategoryDef, Millis, ValidationErrors};
use belfry_store::SharedStore;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// The longest a node uses its copy without reading the table again.
pub const REFRESH: Duration = Duration::from_secs(10);

struct Snapshot {
    map: Arc<HashMap<Category, Arc<CategoryDef>>>,
    loaded: Instant,
}

pub struct Categories {
    store: SharedStore,
    snapshot: RwLock<Snapshot>,
}

impl Categories {
    pub async fn load(store: SharedStore) -> anyhow::Result<Categories> {
        let map = read(&store).await?;
        Ok(Categories {
            store,
            snapshot: RwLock::new(Snapshot {
                map,
                loaded: Instant::now(),
            }),
        })
    }

    /// Reads the table again (after a change, or when stale).
    pub async fn reload(&self) -> ApiResult<Arc<HashMap<Category, Arc<CategoryDef>>>> {
        let map = read(&self.store).await?;
        *self.snapshot.write().expect("not poisoned") = Snapshot {
            map: map.clone(),
            loaded: Instant::now(),
        };
        Ok(map)
    }

    /// The categories as this node knows them (read again when stale).
    pub async fn current(&self) -> ApiResult<Arc<HashMap<Category, Arc<CategoryDef>>>> {
        let (map, fresh) = {
            let s = self.snapshot.read().expect("not poisoned");
            (s.map.clone(), s.loaded.elapsed() < REFRESH)
        };
        if fresh { Ok(map) } else { self.reload().await }
    }

    /// Checks the categories a request names (`(field path, id)`): unknown
    /// ones are refused with 422 `unknown_category`, or created when
    /// `auto` is on.
    pub async fn check(
        &self,
        named: &[(String, Category)],
        auto: bool,
        now: Millis,
    ) -> ApiResult<()> {
        if named.is_empty() {
            return Ok(());
        }
        let mut map = self.current().await?;
        if named.iter().any(|(_, c)| !map.contains_key(c)) {
            map = self.reload().await?;
        }
        let missing: Vec<&(String, Category)> =
            named.iter().filter(|(_, c)| !map.contains_key(c)).collect();
        if missing.is_empty() {
            return Ok(());
        }
        if auto {
            let mut ids: Vec<Category> = missing.iter().map(|(_, c)| c.clone()).collect();
            ids.sort();
            ids.dedup();
            self.store.ensure_categories(ids, now).await?;
            self.reload().await?;
            return Ok(());
        }
        let mut errors = ValidationErrors::new();
        for (field, c) in &missing {
            errors.add(
                field.clone(),
                format!(
                    "there is no category '{c}'; create it with PUT /v1/categories/{c} (or start \
                     Belfry with --auto-categories)"
                ),
            );
        }
        Err(ApiError::Unprocessable {
            code: "unknown_category",
            detail: errors.to_string(),
            errors: errors.0,
        })
    }
}

async fn read(
    store: &SharedStore,
) -> Result<Arc<HashMap<Category, Arc<CategoryDef>>>, belfry_store::StoreError> {
    Ok(Arc::new(
        store
            .list_categories()
            .await?
            .into_iter()
            .map(|c| (c.id.clone(), Arc::new(c)))
            .collect(),
    ))
}
