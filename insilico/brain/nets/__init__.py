"""Network architectures defined in the project (others come from torchvision)."""
