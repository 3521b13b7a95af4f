"""headway.perception"""
