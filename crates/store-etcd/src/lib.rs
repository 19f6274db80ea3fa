//! store-etcd: the `store::Storage` trait on an etcd v3 cluster. It must never interpret the values it stores.
