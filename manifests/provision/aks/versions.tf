# Provider pins. Assumes Terraform >= 1.5 and the azurerm 4.x schema (4.30 or later, below
# 5.0): `parent_id` on federated identity credentials, `auto_scaling_enabled` and
# `network_data_plane` on AKS. Authentication is the provider's usual chain: `az login`, or
# ARM_CLIENT_ID / ARM_TENANT_ID / ARM_SUBSCRIPTION_ID (+ OIDC or secret) in CI.
terraform {
  required_version = ">= 1.5"

  required_providers {
    azurerm = {
      source  = "hashicorp/azurerm"
      version = "~> 4.30"
    }
  }
}

provider "azurerm" {
  features {}
  # null: read from ARM_SUBSCRIPTION_ID (azurerm 4.x requires one of the two).
  subscription_id = var.subscription_id
}
