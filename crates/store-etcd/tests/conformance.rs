//! Runs the store crate's shared conformance suite against the etcd backend, each case on its own
//! freshly started single-member etcd (revisions are global, so cases cannot share one).

mod common;

use std::sync::Arc;

use store::Storage;
use store::suite::{Backend, BoxFuture};

struct Etcd {
    cluster: common::Cluster,
}

impl Backend for Etcd {
    fn open(&self) -> BoxFuture<'_, Arc<dyn Storage>> {
        Box::pin(async move { Arc::new(self.cluster.connect().await) as Arc<dyn Storage> })
    }
}

store::conformance_tests!(Etcd {
    cluster: common::Cluster::single()
});
