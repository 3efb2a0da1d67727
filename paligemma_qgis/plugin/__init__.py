"""QGIS side: toolbar/menu, dialog, QgsTask, Processing provider (the only code importing qgis)."""
