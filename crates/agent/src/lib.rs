//! agent: the node agent. It registers its Node, runs the Pods bound to it with runc, and reports kubelet-style
//! status, Events and logs. It talks to the API server like any client and must never touch the control plane's
//! storage.
