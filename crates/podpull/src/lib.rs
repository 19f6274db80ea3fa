//! podpull: kubelet's image manager for Pods: pull secrets to credentials, imagePullPolicy, back-off, KEP-2535
//! credential verification and the exact Event and waiting texts. It must never run containers.
