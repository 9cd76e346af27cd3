//! Inbox operations of one user: what each one answers and which state
//! change its stream event carries. A backend finds the user, applies the
//! change in its transaction ([`Applied`] says what it touched) and emits
//! the event [`settle`] names after the commit.

use crate::{ItemOp, Result, StateChange, StoreError, StoreEvent};
use belfry_core::{Category, EntityRef, UserId};

/// A change a user makes to their inbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InboxChange {
    /// One item; unknown to the user: `NotFound`.
    Item { id: String, op: ItemOp },
    /// Several items; those the user cannot see are ignored.
    Archive(Vec<String>),
    /// Everything, or one category, is read.
    ReadAll(Option<Category>),
    /// The drawer was opened: everything is seen.
    SeenAll,
    /// The user viewed this entity in the host application.
    ReadEntity(EntityRef),
}

impl InboxChange {
    /// The items an item operation addresses, and the operation.
    pub(crate) fn items(&self) -> Option<(ItemOp, &[String])> {
        match self {
            InboxChange::Item { id, op } => Some((*op, std::slice::from_ref(id))),
            InboxChange::Archive(ids) => Some((ItemOp::Archive, ids)),
            _ => None,
        }
    }
}

/// What a backend's SQL touched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Applied {
    /// The items that were found and changed.
    Items(Vec<String>),
    /// How many items changed.
    Count(i64),
}

/// The answer (how many items changed) and the event of a change, once applied.
pub(crate) fn settle(
    user: &UserId,
    change: InboxChange,
    applied: Applied,
) -> Result<(i64, Option<StoreEvent>)> {
    let count = match &applied {
        Applied::Items(ids) => ids.len() as i64,
        Applied::Count(n) => *n,
    };
    let state = match (change, applied) {
        (InboxChange::Item { op, .. }, Applied::Items(ids)) => {
            if ids.is_empty() {
                return Err(StoreError::NotFound);
            }
            Some(StateChange::Items { op, ids })
        }
        (InboxChange::Archive(_), Applied::Items(ids)) => {
            (!ids.is_empty()).then_some(StateChange::Items {
                op: ItemOp::Archive,
                ids,
            })
        }
        (InboxChange::ReadAll(category), _) => Some(StateChange::ReadAll { category }),
        (InboxChange::SeenAll, _) => Some(StateChange::SeenAll),
        (InboxChange::ReadEntity(entity), _) => Some(StateChange::ReadEntity { entity }),
        (change, applied) => {
            return Err(StoreError::backend(format!(
                "{change:?} cannot have applied {applied:?}"
            )));
        }
    };
    let event = state.map(|change| StoreEvent::State {
        user: user.clone(),
        change,
    });
    Ok((count, event))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u() -> UserId {
        UserId::parse("u1").unwrap()
    }

    #[test]
    fn one_item_that_is_not_there_is_not_found() {
        let change = InboxChange::Item {
            id: "N".into(),
            op: ItemOp::Read,
        };
        assert!(matches!(
            settle(&u(), change.clone(), Applied::Items(vec![])),
            Err(StoreError::NotFound)
        ));
        let (n, event) = settle(&u(), change, Applied::Items(vec!["N".into()])).unwrap();
        assert_eq!(n, 1);
        assert_eq!(
            event,
            Some(StoreEvent::State {
                user: u(),
                change: StateChange::Items {
                    op: ItemOp::Read,
                    ids: vec!["N".into()]
                }
            })
        );
    }

    #[test]
    fn archiving_nothing_says_nothing() {
        let (n, event) = settle(
            &u(),
            InboxChange::Archive(vec!["x".into()]),
            Applied::Items(vec![]),
        )
        .unwrap();
        assert_eq!((n, event), (0, None));
    }

    #[test]
    fn marking_read_always_tells_the_streams() {
        let (n, event) = settle(&u(), InboxChange::ReadAll(None), Applied::Count(0)).unwrap();
        assert_eq!(n, 0);
        assert!(matches!(
            event,
            Some(StoreEvent::State {
                change: StateChange::ReadAll { category: None },
                ..
            })
        ));
        let (_, event) = settle(&u(), InboxChange::SeenAll, Applied::Count(0)).unwrap();
        assert!(event.is_some());
    }
}
