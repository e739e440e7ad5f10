variable "subscription_id" {
  description = "Azure subscription to deploy into. null reads ARM_SUBSCRIPTION_ID (azurerm 4.x needs one of the two)."
  type        = string
  default     = null
}

variable "location" {
  description = "Azure region of every resource."
  type        = string
  default     = "westeurope"
}

variable "resource_group_name" {
  description = "Resource group created for the cluster, the registry and the identity."
  type        = string
  default     = "rg-tidescale"
}

variable "cluster_name" {
  description = "Name of the AKS cluster (also its DNS prefix and the prefix of the identity's name)."
  type        = string
  default     = "aks-tidescale"
}

variable "kubernetes_version" {
  description = "AKS Kubernetes version, e.g. \"1.33\". null takes AKS's current default."
  type        = string
  default     = null
}

variable "node_vm_size" {
  description = "VM size of the system node pool."
  type        = string
  default     = "Standard_D2s_v5"
}

variable "node_count" {
  description = "Nodes of the system node pool (the minimum when node_autoscaling is on)."
  type        = number
  default     = 2
}

variable "node_autoscaling" {
  description = "Let the cluster autoscaler grow the node pool up to node_max_count, so pods tidescale adds find room."
  type        = bool
  default     = true
}

variable "node_max_count" {
  description = "Most nodes of the system node pool when node_autoscaling is on."
  type        = number
  default     = 5
}

variable "acr_name" {
  description = "Name of the container registry (globally unique, 5-50 letters and digits). null derives one from cluster_name and the subscription."
  type        = string
  default     = null
}

variable "acr_sku" {
  description = "SKU of the container registry: Basic, Standard or Premium."
  type        = string
  default     = "Basic"
}

variable "tidescale_namespace" {
  description = "Namespace tidescale's Helm release is installed into (the federated credential's subject)."
  type        = string
  default     = "keda"
}

variable "tidescale_service_account" {
  description = "ServiceAccount of tidescale's operator (the chart's <release>-operator; release `tidescale` gives tidescale-operator)."
  type        = string
  default     = "tidescale-operator"
}

variable "create_servicebus" {
  description = "Also create a Service Bus namespace and queue for the servicebus-worker sample, with a Listen policy for the worker and Data Owner for tidescale's identity."
  type        = bool
  default     = false
}

variable "servicebus_namespace_name" {
  description = "Name of the Service Bus namespace (globally unique). null derives one from cluster_name and the subscription."
  type        = string
  default     = null
}

variable "servicebus_queue_name" {
  description = "Queue the sample worker consumes and the sample ScaledObject watches."
  type        = string
  default     = "orders"
}

variable "tags" {
  description = "Tags set on every resource."
  type        = map(string)
  default = {
    project = "tidescale"
  }
}
