"""Foundation shared by every layer: rotation math, the registry type, device choice."""
