"""`artdet bench`: serving, training and upload measured side by side on the same inputs."""
