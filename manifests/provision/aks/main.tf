# AKS with a container registry for tidescale:
# - a resource group, an Azure Container Registry and an AKS cluster with the OIDC issuer and
#   workload identity enabled;
# - AcrPull on the registry for the cluster's kubelet identity (nodes pull images without
#   pull secrets);
# - a user-assigned identity federated with tidescale's ServiceAccount, so scalers can use
#   `podIdentity: {provider: azure-workload}` (the chart's serviceAccount annotation
#   azure.workload.identity/client-id and pod label azure.workload.identity/use: "true");
# - optionally (create_servicebus) a Service Bus namespace and queue for the sample worker.

data "azurerm_client_config" "current" {}

locals {
  # Stable per subscription and cluster, so re-applies keep the same globally unique names.
  suffix         = substr(sha1("${data.azurerm_client_config.current.subscription_id}/${var.cluster_name}"), 0, 8)
  compact_name   = substr(replace(lower(var.cluster_name), "/[^a-z0-9]/", ""), 0, 30)
  acr_name       = coalesce(var.acr_name, "${local.compact_name}${local.suffix}")
  servicebus_ns  = coalesce(var.servicebus_namespace_name, "sb-${local.compact_name}-${local.suffix}")
  federated_subj = "system:serviceaccount:${var.tidescale_namespace}:${var.tidescale_service_account}"
}

resource "azurerm_resource_group" "this" {
  name     = var.resource_group_name
  location = var.location
  tags     = var.tags
}

resource "azurerm_container_registry" "this" {
  name                = local.acr_name
  resource_group_name = azurerm_resource_group.this.name
  location            = azurerm_resource_group.this.location
  sku                 = var.acr_sku
  admin_enabled       = false
  tags                = var.tags
}

resource "azurerm_kubernetes_cluster" "this" {
  name                = var.cluster_name
  location            = azurerm_resource_group.this.location
  resource_group_name = azurerm_resource_group.this.name
  dns_prefix          = var.cluster_name
  kubernetes_version  = var.kubernetes_version

  oidc_issuer_enabled       = true
  workload_identity_enabled = true

  default_node_pool {
    name                        = "system"
    vm_size                     = var.node_vm_size
    node_count                  = var.node_count
    auto_scaling_enabled        = var.node_autoscaling
    min_count                   = var.node_autoscaling ? var.node_count : null
    max_count                   = var.node_autoscaling ? var.node_max_count : null
    temporary_name_for_rotation = "systemtmp"

    upgrade_settings {
      max_surge = "10%"
    }
  }

  identity {
    type = "SystemAssigned"
  }

  # Azure CNI overlay with Cilium: enforces the chart's NetworkPolicy.
  network_profile {
    network_plugin      = "azure"
    network_plugin_mode = "overlay"
    network_data_plane  = "cilium"
    network_policy      = "cilium"
  }

  tags = var.tags

  lifecycle {
    # The cluster autoscaler owns the node count once it is on.
    ignore_changes = [default_node_pool[0].node_count]
  }
}

resource "azurerm_role_assignment" "kubelet_acr_pull" {
  scope                            = azurerm_container_registry.this.id
  role_definition_name             = "AcrPull"
  principal_id                     = azurerm_kubernetes_cluster.this.kubelet_identity[0].object_id
  skip_service_principal_aad_check = true
}

resource "azurerm_user_assigned_identity" "tidescale" {
  name                = "id-${var.cluster_name}-tidescale"
  location            = azurerm_resource_group.this.location
  resource_group_name = azurerm_resource_group.this.name
  tags                = var.tags
}

resource "azurerm_federated_identity_credential" "tidescale" {
  name                = "tidescale-operator"
  resource_group_name = azurerm_resource_group.this.name
  parent_id           = azurerm_user_assigned_identity.tidescale.id
  audience            = ["api://AzureADTokenExchange"]
  issuer              = azurerm_kubernetes_cluster.this.oidc_issuer_url
  subject             = local.federated_subj
}

# --- Optional: Service Bus for the servicebus-worker sample -------------------------------

resource "azurerm_servicebus_namespace" "sample" {
  count               = var.create_servicebus ? 1 : 0
  name                = local.servicebus_ns
  location            = azurerm_resource_group.this.location
  resource_group_name = azurerm_resource_group.this.name
  sku                 = "Standard"
  tags                = var.tags
}

resource "azurerm_servicebus_queue" "sample" {
  count        = var.create_servicebus ? 1 : 0
  name         = var.servicebus_queue_name
  namespace_id = azurerm_servicebus_namespace.sample[0].id
  # Longer than the worker's WORK_MS, so a lock outlives the work it covers.
  lock_duration      = "PT1M"
  max_delivery_count = 10
}

# The worker's credential: receive (Listen) on this queue only.
resource "azurerm_servicebus_queue_authorization_rule" "worker_listen" {
  count    = var.create_servicebus ? 1 : 0
  name     = "servicebus-worker-listen"
  queue_id = azurerm_servicebus_queue.sample[0].id
  listen   = true
  send     = false
  manage   = false
}

# tidescale reads queue counts through the management API with its workload identity
# (KEDA documents Azure Service Bus Data Owner for this).
resource "azurerm_role_assignment" "tidescale_servicebus" {
  count                = var.create_servicebus ? 1 : 0
  scope                = azurerm_servicebus_namespace.sample[0].id
  role_definition_name = "Azure Service Bus Data Owner"
  principal_id         = azurerm_user_assigned_identity.tidescale.principal_id
}
