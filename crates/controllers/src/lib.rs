//! controllers: the control loops that turn desired state into Pods (scheduler, Deployment, ReplicaSet,
//! StatefulSet, node lifecycle). They talk to the API server like any client and must never touch storage.
