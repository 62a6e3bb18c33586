//! A real Kubernetes API server on loopback (being written).

/// Starts etcd and kube-apiserver; returns the kubeconfig path.
pub fn up() -> anyhow::Result<std::path::PathBuf> {
    anyhow::bail!("k8s-up is being written")
}

/// Stops them.
pub fn down() -> anyhow::Result<()> {
    anyhow::bail!("k8s-down is being written")
}
