"""Pinned versions for the Kubernetes objects built in this package.

The cluster stack (a later issue) must create EKS at KUBERNETES_VERSION; tests validate every
object against that version's schemas with `kubernetes-validate --strict`.
"""

# EKS: 1.34 leaves standard support on 2026-12-02 (extended support costs more per cluster
# hour); 1.36 has been on EKS since 2026-06-02, in standard support until 2027-08-02, and
# aws-cdk-lib pinned here offers eks.KubernetesVersion.V1_36.
KUBERNETES_VERSION = "1.36"
# External Secrets Operator v0.16+ serves external-secrets.io/v1 (v1beta1 is deprecated).
EXTERNAL_SECRETS_API = "external-secrets.io/v1"
# cert-manager serves cert-manager.io/v1 (Certificate) since v1.0.
CERT_MANAGER_API = "cert-manager.io/v1"
