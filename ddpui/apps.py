from django.apps import AppConfig


class DdpuiConfig(AppConfig):
    name = "ddpui"
    verbose_name = "ddpui"
    default_auto_field = "django.db.models.BigAutoField"
