"""What the server does, apart from HTTP: each module owns one resource; handlers stay thin."""
